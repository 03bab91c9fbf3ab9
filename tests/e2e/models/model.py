"""A small, real KServe model that the sidecar tests can make misbehave.

A scikit-learn logistic regression (trained at start on fixed synthetic data) served by
KServe's own ModelServer, V1 (`/v1/models/guardrail-test:predict`) and V2
(`/v2/models/guardrail-test/infer`). Its behaviour is read, on every request, from the
file named by `--mode_file` (the test writes it):

  ok            correct probabilities
  nan           a NaN in the output
  null          a None in the output (V1)
  empty         no predictions (V1) / no outputs (V2)
  wrong_shape   one prediction fewer than instances (V1) / data shorter than shape (V2)
  error500      the model raises: KServe answers 500
  slow:<ms>     sleeps <ms> milliseconds, then answers correctly

Run: python model.py --http_port P --grpc_port G --mode_file FILE
"""

import argparse
import asyncio
import math

import numpy as np
from sklearn.linear_model import LogisticRegression

import kserve
from kserve import InferOutput, InferRequest, InferResponse, Model, ModelServer
from kserve import model_server

NAME = "guardrail-test"


def train():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return LogisticRegression().fit(x, y)


class Misbehaving(Model):
    def __init__(self, name, mode_file):
        super().__init__(name)
        self.mode_file = mode_file
        self.clf = train()
        self.ready = True

    def mode(self):
        try:
            with open(self.mode_file, encoding="utf-8") as f:
                return f.read().strip() or "ok"
        except FileNotFoundError:
            return "ok"

    async def predict(self, payload, headers=None, response_headers=None):
        mode = self.mode()
        if mode.startswith("slow:"):
            await asyncio.sleep(int(mode.split(":", 1)[1]) / 1000.0)
            mode = "ok"
        if mode == "error500":
            raise RuntimeError("model failure requested by the test")
        if isinstance(payload, InferRequest):
            return self.predict_v2(payload, mode)
        return self.predict_v1(payload, mode)

    def predict_v1(self, payload, mode):
        rows = self.clf.predict_proba(np.asarray(payload["instances"], dtype=float)).tolist()
        if mode == "nan":
            rows[0][0] = math.nan
        elif mode == "null":
            rows[0][0] = None
        elif mode == "empty":
            rows = []
        elif mode == "wrong_shape":
            rows = rows[:-1]
        return {"predictions": rows}

    def predict_v2(self, request, mode):
        x = np.asarray(request.inputs[0].data, dtype=float).reshape(request.inputs[0].shape)
        probs = self.clf.predict_proba(x).astype(np.float32)
        data = probs.flatten().tolist()
        response_id = request.id or "guardrail-test"
        if mode == "wrong_shape":
            # KServe's InferResponse refuses data that does not fit its shape, so a
            # broken server is imitated with the raw V2 document it would have sent.
            return {
                "model_name": NAME,
                "id": response_id,
                "outputs": [
                    {"name": "probs", "shape": list(probs.shape), "datatype": "FP32", "data": data[:-1]}
                ],
            }
        if mode in ("nan", "null"):
            data[0] = math.nan
        outputs = [] if mode == "empty" else [
            InferOutput(name="probs", shape=list(probs.shape), datatype="FP32", data=data)
        ]
        return InferResponse(model_name=NAME, infer_outputs=outputs, response_id=response_id)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[model_server.parser])
    parser.add_argument("--mode_file", required=True)
    args, _ = parser.parse_known_args()
    ModelServer(http_port=args.http_port, grpc_port=args.grpc_port, enable_grpc=False).start(
        [Misbehaving(NAME, args.mode_file)]
    )

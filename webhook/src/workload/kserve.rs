//! KServe InferenceService components. A predictor that names a model format
//! (`model`, `sklearn`, `tensorflow`, …) gets its `kserve-container` from a ServingRuntime
//! chosen by the controller, so only what the author wrote is checked here: the explicit
//! `containers` (read as pod specs by the caller), an explicit `image` override on a
//! model-format block, and OCI model images (`storageUri: oci://…`, which KServe runs as
//! its `modelcar` container, so they are images like any other).

use serde_json::Value;

use super::ImageUse;
use crate::image::Image;

/// Model-format blocks of a predictor (KServe v1beta1 `PredictorSpec`) and explainer.
const FORMAT_KEYS: &[(&str, &[&str])] = &[
    (
        "predictor",
        &[
            "model",
            "sklearn",
            "xgboost",
            "tensorflow",
            "pytorch",
            "triton",
            "onnx",
            "huggingface",
            "pmml",
            "lightgbm",
            "paddle",
        ],
    ),
    ("explainer", &["art"]),
];

/// KServe's prefix for a model packaged as an OCI image ("modelcar").
const OCI_SCHEME: &str = "oci://";
/// The container KServe runs an OCI model image in.
const MODELCAR: &str = "modelcar";

/// Images set explicitly on model-format blocks, e.g. `spec.predictor.model.image`, and
/// OCI model images (`spec.predictor.model.storageUri: oci://…`, or a custom container's
/// `STORAGE_URI` env var).
pub fn model_images(object: &Value) -> Result<Vec<ImageUse>, String> {
    let mut images = Vec::new();
    for component in ["predictor", "transformer", "explainer"] {
        let containers = object
            .get("spec")
            .and_then(|s| s.get(component))
            .and_then(|c| c.get("containers"))
            .and_then(Value::as_array);
        for (i, container) in containers.into_iter().flatten().enumerate() {
            let env = container.get("env").and_then(Value::as_array);
            for (j, var) in env.into_iter().flatten().enumerate() {
                if var.get("name").and_then(Value::as_str) == Some("STORAGE_URI") {
                    let field = format!("spec.{component}.containers[{i}].env[{j}].value");
                    oci_model(var.get("value"), field, &mut images)?;
                }
            }
        }
    }
    for (component, keys) in FORMAT_KEYS {
        let Some(spec) = object.get("spec").and_then(|s| s.get(component)) else {
            continue;
        };
        for key in *keys {
            if let Some(block) = spec.get(key) {
                let field = format!("spec.{component}.{key}.storageUri");
                oci_model(block.get("storageUri"), field, &mut images)?;
            }
            let Some(image) = spec.get(key).and_then(|block| block.get("image")) else {
                continue;
            };
            let field = format!("spec.{component}.{key}.image");
            match image {
                Value::Null => {}
                Value::String(image) => images.push(ImageUse {
                    image: Image::new(image.as_str()),
                    container: "kserve-container".into(),
                    field,
                }),
                other => return Err(format!("{field}: expected a string, found {other}")),
            }
        }
    }
    Ok(images)
}

/// The modelcar image of a `storageUri`, if it names an OCI image.
fn oci_model(uri: Option<&Value>, field: String, images: &mut Vec<ImageUse>) -> Result<(), String> {
    match uri {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(uri)) => {
            // KServe matches the scheme case-sensitively; anything else is not an image.
            if let Some(image) = uri.strip_prefix(OCI_SCHEME) {
                images.push(ImageUse {
                    image: Image::new(image),
                    container: MODELCAR.into(),
                    field,
                });
            }
            Ok(())
        }
        Some(other) => Err(format!("{field}: expected a string, found {other}")),
    }
}

//! KServe InferenceService components. A predictor that names a model format
//! (`model`, `sklearn`, `tensorflow`, …) gets its `kserve-container` from a ServingRuntime
//! chosen by the controller, so only what the author wrote is checked here: the explicit
//! `containers` (read as pod specs by the caller) and an explicit `image` override on a
//! model-format block.

use serde_json::Value;

use super::ImageUse;

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

/// Images set explicitly on model-format blocks, e.g. `spec.predictor.model.image`.
pub fn model_images(object: &Value) -> Result<Vec<ImageUse>, String> {
    let mut images = Vec::new();
    for (component, keys) in FORMAT_KEYS {
        let Some(spec) = object.get("spec").and_then(|s| s.get(component)) else {
            continue;
        };
        for key in *keys {
            let Some(image) = spec.get(key).and_then(|block| block.get("image")) else {
                continue;
            };
            let field = format!("spec.{component}.{key}.image");
            match image {
                Value::Null => {}
                Value::String(image) => images.push(ImageUse {
                    image: image.clone(),
                    container: "kserve-container".into(),
                    field,
                }),
                other => return Err(format!("{field}: expected a string, found {other}")),
            }
        }
    }
    Ok(images)
}

//! KServe V1 (`/v1/models/<m>:predict`): `{"predictions": [...]}`.

use serde::Deserialize;
use serde_json::Value;

use super::{is_non_finite, json::for_each_leaf, Findings};
use crate::config::SanityConfig;

mod summary;

pub(super) use summary::summarize;
use summary::Summary;

/// Number of `instances` (or `inputs`) in a V1 request body; `None` if not V1 JSON.
pub fn count_instances(body: &[u8]) -> Option<usize> {
    #[derive(Deserialize)]
    struct Request {
        // `IgnoredAny` is zero-sized: counting allocates nothing per instance.
        instances: Option<Vec<serde::de::IgnoredAny>>,
        inputs: Option<Vec<serde::de::IgnoredAny>>,
    }
    let r: Request = serde_json::from_slice(body).ok()?;
    r.instances.or(r.inputs).map(|v| v.len())
}

pub(super) fn check(v: &Value, instances: Option<usize>, cfg: &SanityConfig, f: &mut Findings<'_>) {
    let Some(predictions) = v.get("predictions") else {
        f.fail("missing_predictions");
        return;
    };
    let Some(rows) = predictions.as_array() else {
        f.fail("missing_predictions");
        return;
    };
    if rows.is_empty() {
        f.fail("empty_predictions");
        return;
    }
    if let Some(n) = instances {
        if n != rows.len() {
            f.fail("prediction_count");
        }
    }
    let mut non_finite = false;
    for_each_leaf(predictions, &mut |leaf| non_finite |= is_non_finite(leaf));
    if non_finite {
        f.fail("non_finite");
    }
    if cfg.probabilities
        && !rows
            .iter()
            .all(|row| is_probability_row(row, cfg.probability_epsilon))
    {
        f.fail("probability");
    }
}

/// The same findings as `check`, from a streamed `Summary` of the body.
pub(super) fn check_summary(
    s: &Summary,
    instances: Option<usize>,
    cfg: &SanityConfig,
    f: &mut Findings<'_>,
) {
    let Some(rows) = s.predictions else {
        f.fail("missing_predictions");
        return;
    };
    if rows.count == 0 {
        f.fail("empty_predictions");
        return;
    }
    if instances.is_some_and(|n| n != rows.count) {
        f.fail("prediction_count");
    }
    if rows.non_finite {
        f.fail("non_finite");
    }
    if cfg.probabilities && !rows.probability_rows {
        f.fail("probability");
    }
}

/// A probability, or a row of probabilities summing to 1 ± `epsilon`.
fn is_probability_row(row: &Value, epsilon: f64) -> bool {
    let in_unit = |x: f64| (0.0..=1.0).contains(&x);
    match row {
        Value::Number(n) => n.as_f64().is_some_and(in_unit),
        Value::Array(items) => {
            let mut sum = 0.0;
            for item in items {
                match item.as_f64() {
                    Some(x) if in_unit(x) => sum += x,
                    _ => return false,
                }
            }
            (sum - 1.0).abs() <= epsilon
        }
        _ => false,
    }
}

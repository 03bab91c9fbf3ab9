//! Open Inference Protocol v2 (`/v2/models/<m>/infer`): `{"outputs": [{name, shape,
//! datatype, data}]}`.

use serde_json::Value;

use super::{json::for_each_leaf, Findings};

pub(super) fn check(v: &Value, expected: &[String], f: &mut Findings<'_>) {
    let outputs = match v.get("outputs").and_then(Value::as_array) {
        Some(o) if !o.is_empty() => o,
        _ => {
            f.fail("missing_outputs");
            return;
        }
    };
    for name in expected {
        if !outputs
            .iter()
            .any(|o| o.get("name").and_then(Value::as_str) == Some(name))
        {
            f.fail("missing_output");
        }
    }
    for output in outputs {
        check_output(output, f);
    }
}

fn check_output(output: &Value, f: &mut Findings<'_>) {
    let shape: Option<Vec<u64>> = output
        .get("shape")
        .and_then(Value::as_array)
        .and_then(|dims| dims.iter().map(Value::as_u64).collect());
    let (Some(shape), Some(data)) = (shape, output.get("data")) else {
        f.fail("shape_mismatch");
        return;
    };
    let datatype = output.get("datatype").and_then(Value::as_str).unwrap_or("");
    let mut count: u64 = 0;
    let mut type_ok = true;
    let mut finite = true;
    for_each_leaf(data, &mut |leaf| {
        count += 1;
        match value_fits(datatype, leaf) {
            Fit::Yes => {}
            Fit::NonFinite => finite = false,
            Fit::No => type_ok = false,
        }
    });
    let expected = shape.iter().try_fold(1u64, |acc, d| acc.checked_mul(*d));
    if expected != Some(count) {
        f.fail("shape_mismatch");
    }
    if !type_ok {
        f.fail("datatype");
    }
    if !finite {
        f.fail("non_finite");
    }
}

enum Fit {
    Yes,
    No,
    NonFinite,
}

/// Does `v` fit the OIP `datatype`? Floats written as `null` (how Python servers
/// encode NaN) are non-finite rather than mistyped.
fn value_fits(datatype: &str, v: &Value) -> Fit {
    let int_in = |lo: i128, hi: i128| {
        let n = v
            .as_i64()
            .map(i128::from)
            .or_else(|| v.as_u64().map(i128::from));
        if n.is_some_and(|n| (lo..=hi).contains(&n)) {
            Fit::Yes
        } else {
            Fit::No
        }
    };
    match datatype {
        "BOOL" => bool_fit(v.is_boolean()),
        "BYTES" => bool_fit(v.is_string()),
        "INT8" => int_in(i8::MIN.into(), i8::MAX.into()),
        "INT16" => int_in(i16::MIN.into(), i16::MAX.into()),
        "INT32" => int_in(i32::MIN.into(), i32::MAX.into()),
        "INT64" => int_in(i64::MIN.into(), i64::MAX.into()),
        "UINT8" => int_in(0, u8::MAX.into()),
        "UINT16" => int_in(0, u16::MAX.into()),
        "UINT32" => int_in(0, u32::MAX.into()),
        "UINT64" => int_in(0, u64::MAX.into()),
        "FP16" | "FP32" | "FP64" | "BF16" => match v {
            Value::Null => Fit::NonFinite,
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Fit::Yes,
            Value::Number(_) => Fit::NonFinite,
            _ => Fit::No,
        },
        _ => Fit::No,
    }
}

fn bool_fit(ok: bool) -> Fit {
    if ok {
        Fit::Yes
    } else {
        Fit::No
    }
}

//! JSON helpers tolerant of what model servers really write.

use serde_json::Value;

/// Parses `body` as JSON. Bare `NaN`, `Infinity` and `-Infinity` tokens (which Python's
/// `json.dumps` writes but JSON forbids) are read as `null` and reported, so the
/// remaining checks still run. `None` when the body is not JSON even then.
pub(super) fn parse_lenient(body: &[u8]) -> Option<(Value, bool)> {
    if let Ok(v) = serde_json::from_slice(body) {
        return Some((v, false));
    }
    let cleaned = replace_non_finite_tokens(body)?;
    serde_json::from_slice(&cleaned).ok().map(|v| (v, true))
}

/// Replaces bare non-finite tokens outside strings by `null`; `None` if there are none.
fn replace_non_finite_tokens(body: &[u8]) -> Option<Vec<u8>> {
    const TOKENS: [&[u8]; 3] = [b"-Infinity", b"Infinity", b"NaN"];
    let mut out = Vec::with_capacity(body.len());
    let mut in_string = false;
    let mut escaped = false;
    let mut found = false;
    let mut i = 0;
    while i < body.len() {
        let b = body[i];
        if in_string {
            out.push(b);
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            i += 1;
            continue;
        }
        if b == b'"' {
            in_string = true;
        } else if let Some(t) = TOKENS.iter().find(|t| body[i..].starts_with(t)) {
            out.extend_from_slice(b"null");
            i += t.len();
            found = true;
            continue;
        }
        out.push(b);
        i += 1;
    }
    found.then_some(out)
}

/// Appends every number in `v` (a number or nested arrays of numbers); non-numbers
/// are skipped.
pub(super) fn collect_numbers(v: &Value, out: &mut Vec<f64>) {
    match v {
        Value::Number(n) => out.extend(n.as_f64()),
        Value::Array(items) => items.iter().for_each(|i| collect_numbers(i, out)),
        _ => {}
    }
}

/// Calls `f` on every leaf (non-array) value of nested arrays.
pub(super) fn for_each_leaf<'v>(v: &'v Value, f: &mut impl FnMut(&'v Value)) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| for_each_leaf(i, f)),
        leaf => f(leaf),
    }
}

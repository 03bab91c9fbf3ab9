//! OpenAI-compatible completions and chat completions, streamed (SSE) or not.

use serde_json::Value;

use super::Findings;

/// True when the body is a Server-Sent Events stream rather than one JSON document.
pub(super) fn is_event_stream(body: &[u8]) -> bool {
    let trimmed = body.trim_ascii_start();
    trimmed.starts_with(b"data:") || trimmed.starts_with(b"event:") || trimmed.starts_with(b":")
}

/// One choice, accumulated over a stream or read from a single response.
#[derive(Default)]
struct Choice {
    text: String,
    tool_calls: bool,
    finish_reason: Option<String>,
}

pub(super) fn check_json(v: &Value, max_repeat: usize, f: &mut Findings<'_>) {
    let mut choices = Vec::new();
    if let Some(items) = v.get("choices").and_then(Value::as_array) {
        for item in items {
            let mut c = Choice::default();
            absorb(&mut c, item);
            choices.push(c);
        }
    }
    judge(&choices, max_repeat, f);
}

pub(super) fn check_stream(body: &[u8], max_repeat: usize, f: &mut Findings<'_>) {
    let text = String::from_utf8_lossy(body);
    let mut choices: Vec<Choice> = Vec::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let data = data.trim();
        if data == "[DONE]" || data.is_empty() {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(data) else {
            f.fail("invalid_json");
            continue;
        };
        for item in event
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = item.get("index").and_then(Value::as_u64).unwrap_or(0) as usize;
            // Bound the index so a hostile stream cannot make us allocate.
            if index >= 64 {
                continue;
            }
            if choices.len() <= index {
                choices.resize_with(index + 1, Choice::default);
            }
            absorb(&mut choices[index], item);
        }
    }
    judge(&choices, max_repeat, f);
}

/// Adds one (possibly partial, streamed) choice object to `c`.
fn absorb(c: &mut Choice, item: &Value) {
    for part in [item.get("message"), item.get("delta")]
        .into_iter()
        .flatten()
    {
        if let Some(s) = part.get("content").and_then(Value::as_str) {
            c.text.push_str(s);
        }
        if part
            .get("tool_calls")
            .and_then(Value::as_array)
            .is_some_and(|t| !t.is_empty())
        {
            c.tool_calls = true;
        }
    }
    if let Some(s) = item.get("text").and_then(Value::as_str) {
        c.text.push_str(s);
    }
    if let Some(r) = item.get("finish_reason").and_then(Value::as_str) {
        c.finish_reason = Some(r.to_string());
    }
}

fn judge(choices: &[Choice], max_repeat: usize, f: &mut Findings<'_>) {
    if choices.is_empty() {
        f.fail("no_choices");
        return;
    }
    for c in choices {
        if c.text.trim().is_empty() && !c.tool_calls {
            f.fail("empty_content");
        }
        if is_degenerate(&c.text, max_repeat) {
            f.fail("repetition");
        }
        if c.finish_reason.as_deref() == Some("length") {
            f.truncated = true;
        }
    }
}

/// The same character, or the same word, repeated more than `max_repeat` times in a row.
pub(super) fn is_degenerate(text: &str, max_repeat: usize) -> bool {
    longest_run(text.chars()) > max_repeat || longest_run(text.split_whitespace()) > max_repeat
}

fn longest_run<T: PartialEq>(items: impl Iterator<Item = T>) -> usize {
    let mut best = 0;
    let mut run = 0;
    let mut last: Option<T> = None;
    for item in items {
        if last.as_ref() == Some(&item) {
            run += 1;
        } else {
            run = 1;
            last = Some(item);
        }
        best = best.max(run);
    }
    best
}

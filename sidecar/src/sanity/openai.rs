//! OpenAI-compatible completions and chat completions, streamed (SSE) or not.

use std::{borrow::Cow, fmt};

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::{
    read::{self, leaf_visits, scalar_visits, Fields, Object, Skip, Text},
    Findings,
};

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
            absorb(&mut c, &ChoicePart::from_value(item));
            choices.push(c);
        }
    }
    judge(&choices, max_repeat, f);
}

pub(super) fn check_stream(body: &[u8], max_repeat: usize, f: &mut Findings<'_>) {
    stream(body, max_repeat, f, event_choices);
}

/// `check_stream`, each event read by `read` first (the tests pass one that always
/// defers to the tree, to compare both paths).
fn stream(
    body: &[u8],
    max_repeat: usize,
    f: &mut Findings<'_>,
    read: fn(&str) -> Option<Vec<ChoicePart<'_>>>,
) {
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
        // Most events read straight into their choices; anything unusual takes the tree.
        if let Some(items) = read(data) {
            items.iter().for_each(|item| add(&mut choices, item));
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
            add(&mut choices, &ChoicePart::from_value(item));
        }
    }
    judge(&choices, max_repeat, f);
}

/// Adds one streamed choice object to the choice its index names.
fn add(choices: &mut Vec<Choice>, item: &ChoicePart<'_>) {
    let index = item.index.unwrap_or(0) as usize;
    // Bound the index so a hostile stream cannot make us allocate.
    if index >= 64 {
        return;
    }
    if choices.len() <= index {
        choices.resize_with(index + 1, Choice::default);
    }
    absorb(&mut choices[index], item);
}

/// What the checks read from one choice object (of a response, or of a streamed event).
#[derive(Debug, Default, PartialEq)]
struct ChoicePart<'a> {
    /// `None` when absent or not an unsigned integer.
    index: Option<u64>,
    message: Option<Part<'a>>,
    delta: Option<Part<'a>>,
    text: Option<Cow<'a, str>>,
    finish_reason: Option<Cow<'a, str>>,
}

/// A `message` or `delta`.
#[derive(Debug, Default, PartialEq)]
struct Part<'a> {
    content: Option<Cow<'a, str>>,
    /// `tool_calls` is a non-empty array.
    tool_calls: bool,
}

impl<'a> ChoicePart<'a> {
    fn from_value(item: &'a Value) -> Self {
        let text = |v: &'a Value, key: &str| v.get(key).and_then(Value::as_str).map(Cow::Borrowed);
        let part = |key: &str| {
            item.get(key).map(|p| Part {
                content: text(p, "content"),
                tool_calls: (p.get("tool_calls").and_then(Value::as_array))
                    .is_some_and(|t| !t.is_empty()),
            })
        };
        Self {
            index: item.get("index").and_then(Value::as_u64),
            message: part("message"),
            delta: part("delta"),
            text: text(item, "text"),
            finish_reason: text(item, "finish_reason"),
        }
    }
}

/// Adds one (possibly partial, streamed) choice object to `c`.
fn absorb(c: &mut Choice, item: &ChoicePart<'_>) {
    for part in [&item.message, &item.delta].into_iter().flatten() {
        if let Some(s) = &part.content {
            c.text.push_str(s);
        }
        c.tool_calls |= part.tool_calls;
    }
    if let Some(s) = &item.text {
        c.text.push_str(s);
    }
    if let Some(r) = &item.finish_reason {
        c.finish_reason = Some(r.to_string());
    }
}

/// One streamed event's choices read straight from its JSON, with no tree; `None` when
/// the event is not strict JSON, or is not an object, or a choice or its `message` or
/// `delta` is not an object, or a key repeats, or a read field has another type than
/// the tree path reads: the caller then parses the tree.
fn event_choices(data: &str) -> Option<Vec<ChoicePart<'_>>> {
    read::object::<Event>(data.as_bytes()).map(|Event(choices)| choices)
}

fn text<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_value::<Option<Text<'de>>>()?.map(|t| t.0))
}

/// A streamed event: its `choices` (none when absent or `null`).
#[derive(Default)]
struct Event<'a>(Vec<ChoicePart<'a>>);

impl<'de> Fields<'de> for Event<'de> {
    const KEYS: &'static [&'static str] = &["choices"];
    fn field<A: MapAccess<'de>>(&mut self, _: usize, map: &mut A) -> Result<(), A::Error> {
        let choices: Option<Vec<Object<ChoicePart<'de>>>> = map.next_value()?;
        self.0 = choices.into_iter().flatten().map(|Object(c)| c).collect();
        Ok(())
    }
}

impl<'de> Fields<'de> for ChoicePart<'de> {
    const KEYS: &'static [&'static str] = &["index", "message", "delta", "text", "finish_reason"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        match i {
            0 => self.index = map.next_value()?,
            1 => self.message = map.next_value::<Option<Object<Part>>>()?.map(|Object(p)| p),
            2 => self.delta = map.next_value::<Option<Object<Part>>>()?.map(|Object(p)| p),
            3 => self.text = text(map)?,
            _ => self.finish_reason = text(map)?,
        }
        Ok(())
    }
}

impl<'de> Fields<'de> for Part<'de> {
    const KEYS: &'static [&'static str] = &["content", "tool_calls"];
    fn field<A: MapAccess<'de>>(&mut self, i: usize, map: &mut A) -> Result<(), A::Error> {
        if i == 0 {
            self.content = text(map)?;
        } else {
            self.tool_calls = map.next_value::<ToolCalls>()?.0;
        }
        Ok(())
    }
}

/// Whether a value is a non-empty array (any other value reads as false, as
/// `as_array` finds it).
struct ToolCalls(bool);

impl<'de> Deserialize<'de> for ToolCalls {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ToolCallsVisitor)
    }
}

struct ToolCallsVisitor;

impl<'de> Visitor<'de> for ToolCallsVisitor {
    type Value = ToolCalls;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ToolCalls, A::Error> {
        let mut any = false;
        while seq.next_element::<Skip>()?.is_some() {
            any = true;
        }
        Ok(ToolCalls(any))
    }
    scalar_visits!(ToolCalls(false));
    leaf_visits!(ToolCalls(false));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The streamed reading of SSE events must find exactly what the tree finds.
    #[test]
    fn streamed_events_match_the_tree() {
        let events = [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"lo \"there\"\n\u00e9"},"finish_reason":null}]}"#,
            r#"{"choices":[{"index":1,"delta":{"content":"second"}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[{"id":"1"}]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":[]}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":{"a":1}}}]}"#,
            r#"{"choices":[{"delta":{"tool_calls":"x","content":null}}]}"#,
            r#"{"choices":[{"message":{"content":"whole"},"delta":{"content":" part"},"text":" t"}]}"#,
            r#"{"choices":[{"text":"legacy completion"}]}"#,
            r#"{"choices":[{"index":70,"delta":{"content":"far"}}]}"#,
            r#"{"choices":[{"index":-1,"delta":{"content":"neg"}}]}"#,
            r#"{"choices":[{"index":1.0,"delta":{"content":"float"}}]}"#,
            r#"{"choices":[{"index":"1","delta":{"content":"str"}}]}"#,
            r#"{"choices":[{"delta":"text"}]}"#,
            r#"{"choices":[{"delta":null,"message":null}]}"#,
            r#"{"choices":[{"delta":{"content":7}}]}"#,
            r#"{"choices":[{"finish_reason":3}]}"#,
            r#"{"choices":[1, {"delta":{"content":"after"}}]}"#,
            r#"{"choices":[{"delta":{"content":"a"},"delta":{"content":"b"}}]}"#,
            r#"{"choices":[],"choices":[{"delta":{"content":"dup"}}]}"#,
            r#"{"choices":null}"#,
            r#"{"choices":{"index":0}}"#,
            r#"{"choices":"x"}"#,
            r#"{"ch\u006fices":[{"delta":{"content":"escaped key"}}]}"#,
            r#"{"choices":[{"delta":{"content":"!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"}}]}"#,
            r#"{"usage":{"total_tokens":3}}"#,
            r#"[{"choices":[]}]"#,
            r#""text""#,
            "null",
            r#"{"choices":[{"delta":{"content":"x"}}]} trailing"#,
            r#"{"choices":[NaN]}"#,
            r#"{"choices":[{"delta":{"content":"\ud800"}}]}"#,
            "not json",
        ];
        let sse = |picked: &[&str]| -> String {
            picked
                .iter()
                .map(|e| format!("data: {e}\n\n"))
                .collect::<String>()
                + "data: [DONE]\n\n"
        };
        let mut streams: Vec<String> = events.iter().map(|e| sse(&[e])).collect();
        for (i, a) in events.iter().enumerate() {
            for b in &events[i..] {
                streams.push(sse(&[a, b, events[0]]));
            }
        }
        for max_repeat in [3, 32] {
            for body in &streams {
                let (mut fast, mut tree) = (Findings::default(), Findings::default());
                check_stream(body.as_bytes(), max_repeat, &mut fast);
                stream(body.as_bytes(), max_repeat, &mut tree, |_| None);
                assert_eq!(fast, tree, "stream {body}");
            }
        }
        // The streamed path really ran on the common events (not only the fallback).
        for e in &events[..6] {
            assert!(event_choices(e).is_some_and(|c| !c.is_empty()), "{e}");
        }
        assert!(event_choices(r#"{"choices":[NaN]}"#).is_none());
    }
}

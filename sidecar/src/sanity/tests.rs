use super::*;
use crate::config::Config;

fn checker(yaml: &str) -> Checker {
    Checker::new(&Config::from_yaml(yaml).expect("config").sanity).expect("checker")
}

fn failed(c: &Checker, kind: Kind, instances: Option<usize>, body: &str) -> Vec<String> {
    c.check(kind, instances, body.as_bytes())
        .failed
        .iter()
        .map(|s| s.to_string())
        .collect()
}

#[test]
fn paths_select_the_protocol() {
    let c = checker("");
    assert_eq!(c.detect("/v1/models/iris:predict"), Some(Kind::KserveV1));
    assert_eq!(c.detect("/v2/models/iris/infer"), Some(Kind::OipV2));
    assert_eq!(c.detect("/v1/chat/completions"), Some(Kind::OpenAi));
    assert_eq!(c.detect("/v2/health/ready"), None);
    let rules = checker("sanity: { rules: [ { name: r, pointer: /a, nonEmpty: true } ] }");
    assert_eq!(rules.detect("/anything"), Some(Kind::Generic));
    assert_eq!(
        checker("sanity: { maxBodyBytes: 0 }").detect("/v2/models/m/infer"),
        None
    );
}

#[test]
fn kserve_v1_checks() {
    let c = checker("sanity: { probabilities: true }");
    let k = Kind::KserveV1;
    assert!(failed(&c, k, Some(2), r#"{"predictions":[[0.2,0.8],[1.0,0.0]]}"#).is_empty());
    assert_eq!(
        failed(&c, k, Some(2), r#"{"predictions":[[0.2,null],[1,0]]}"#),
        ["non_finite", "probability"]
    );
    assert_eq!(
        failed(&c, k, Some(1), r#"{"predictions":[NaN]}"#),
        ["non_finite", "probability"]
    );
    assert_eq!(
        failed(&c, k, Some(1), r#"{"predictions":[-Infinity]}"#)[0],
        "non_finite"
    );
    assert_eq!(
        failed(&c, k, Some(1), r#"{"predictions":[]}"#),
        ["empty_predictions"]
    );
    assert_eq!(
        failed(&c, k, None, r#"{"outputs":[1]}"#),
        ["missing_predictions"]
    );
    assert_eq!(
        failed(&c, k, Some(3), r#"{"predictions":[1,0]}"#),
        ["prediction_count"]
    );
    assert_eq!(
        failed(&c, k, None, r#"{"predictions":[[0.5,0.6]]}"#),
        ["probability"]
    );
    assert_eq!(failed(&c, k, None, "<html>"), ["invalid_json"]);
    // "NaN" inside a string is data, not a token.
    let plain = checker("");
    assert!(failed(&plain, k, None, r#"{"predictions":["NaN"]}"#).is_empty());
    assert_eq!(
        count_instances(br#"{"instances":[[1,2],[3,4],[5,6]]}"#),
        Some(3)
    );
    assert_eq!(count_instances(br#"{"inputs":[1]}"#), Some(1));
    assert_eq!(count_instances(b"[1]"), None);
}

#[test]
fn oip_v2_checks() {
    let c = checker("sanity: { expectedOutputs: [probs] }");
    let k = Kind::OipV2;
    let ok = r#"{"outputs":[{"name":"probs","shape":[2,2],"datatype":"FP32","data":[0.1,0.9,0.5,0.5]}]}"#;
    assert!(failed(&c, k, None, ok).is_empty());
    let nested = r#"{"outputs":[{"name":"probs","shape":[2,2],"datatype":"FP64","data":[[0.1,0.9],[0.5,0.5]]}]}"#;
    assert!(failed(&c, k, None, nested).is_empty());
    let short =
        r#"{"outputs":[{"name":"probs","shape":[2,2],"datatype":"FP32","data":[0.1,0.9,0.5]}]}"#;
    assert_eq!(failed(&c, k, None, short), ["shape_mismatch"]);
    let nan = r#"{"outputs":[{"name":"probs","shape":[2],"datatype":"FP32","data":[null,0.5]}]}"#;
    assert_eq!(failed(&c, k, None, nan), ["non_finite"]);
    let ints = r#"{"outputs":[{"name":"probs","shape":[2],"datatype":"INT8","data":[1,300]}]}"#;
    assert_eq!(failed(&c, k, None, ints), ["datatype"]);
    let other = r#"{"outputs":[{"name":"x","shape":[1],"datatype":"BOOL","data":[true]}]}"#;
    assert_eq!(failed(&c, k, None, other), ["missing_output"]);
    assert_eq!(
        failed(&c, k, None, r#"{"outputs":[]}"#),
        ["missing_outputs"]
    );
}

#[test]
fn openai_checks_plain_and_streamed() {
    let c = checker("sanity: { maxRepeat: 5 }");
    let k = Kind::OpenAi;
    let chat = r#"{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello there"},"finish_reason":"stop"}]}"#;
    assert!(failed(&c, k, None, chat).is_empty());
    assert_eq!(failed(&c, k, None, r#"{"choices":[]}"#), ["no_choices"]);
    let empty = r#"{"choices":[{"message":{"content":""},"finish_reason":"stop"}]}"#;
    assert_eq!(failed(&c, k, None, empty), ["empty_content"]);
    let tool = r#"{"choices":[{"message":{"content":null,"tool_calls":[{"id":"1"}]}}]}"#;
    assert!(failed(&c, k, None, tool).is_empty());
    let rep = r#"{"choices":[{"text":"the the the the the the the"}]}"#;
    assert_eq!(failed(&c, k, None, rep), ["repetition"]);
    let stream = "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                  data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"length\"}]}\n\n\
                  data: [DONE]\n\n";
    let f = c.check(k, None, stream.as_bytes());
    assert!(f.failed.is_empty(), "{:?}", f.failed);
    assert!(f.truncated);
    let degenerate =
        "data: {\"choices\":[{\"delta\":{\"content\":\"!!!!!!!!!!\"}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(failed(&c, k, None, degenerate), ["repetition"]);
}

#[test]
fn custom_rules_and_scores() {
    let c = checker(
        r#"
sanity:
  protocol: none
  rules:
    - { name: label, pointer: /label, enum: [cat, dog] }
    - { name: conf, pointer: /scores, range: { min: 0, max: 1 } }
    - { name: id, pointer: /id, regex: "^req-[0-9]+$" }
    - { name: text, pointer: /text, nonEmpty: true }
  score: { pointer: /scores, edges: [0.5], reference: [1, 1] }
"#,
    );
    let k = Kind::Generic;
    let good = r#"{"label":"cat","scores":[0.1,0.9],"id":"req-1","text":"x"}"#;
    let f = c.check(k, None, good.as_bytes());
    assert!(f.failed.is_empty(), "{:?}", f.failed);
    assert_eq!(f.scores, [0.1, 0.9]);
    let bad = r#"{"label":"cow","scores":[1.5],"id":"x","text":""}"#;
    assert_eq!(
        failed(&c, k, None, bad),
        ["rule:label", "rule:conf", "rule:id", "rule:text"]
    );
    assert_eq!(
        failed(&c, k, None, "{}").len(),
        4,
        "missing values fail their rules"
    );
}

/// The streamed KServe V1 path must find exactly what the JSON-tree path finds.
#[test]
fn kserve_v1_streamed_checks_match_the_tree() {
    let bodies = [
        r#"{"predictions":[[0.2,0.8],[1.0,0.0]]}"#,
        r#"{"predictions":[[0.2,null],[1,0]]}"#,
        r#"{"predictions":[[0.25,0.75,0.0],[0.5,0.5]],"model_name":"m","x":{"a":[null]}}"#,
        r#"{"predictions":[0, 1, 1.0, 0.5]}"#,
        r#"{"predictions":[2, -1, 3e2]}"#,
        r#"{"predictions":[[[0.5,null]],[1]]}"#,
        r#"{"predictions":[[0.5,[0.5]]]}"#,
        r#"{"predictions":[[]]}"#,
        r#"{"predictions":[{"label":null}, "x", true, null]}"#,
        r#"{"predictions":[]}"#,
        r#"{"predictions":{}}"#,
        r#"{"predictions":null}"#,
        r#"{"predictions":"abc"}"#,
        r#"{"predictions":7}"#,
        r#"{"predictions":[1],"predictions":[]}"#,
        r#"{"predictions":[],"predictions":[0.5]}"#,
        r#"{"outputs":[1]}"#,
        r#"{"predicti\u006fns":[0.5]}"#,
        r#"{}"#,
        r#"[{"predictions":[1]}]"#,
        r#"[]"#,
        "null",
        "3",
        r#""predictions""#,
        "true",
        r#"{"predictions":[NaN]}"#,
        r#"{"predictions":[Infinity, 0.5]}"#,
        r#"{"predictions":[1e400]}"#,
        r#"{"predictions":[1],"note":"\ud800"}"#,
        r#"{"predictions":[1]} trailing"#,
        r#"{"predictions":[1],}"#,
        "<html>",
        "",
        r#"{"predictions":[0.1,0.2]}   "#,
        r#"{"predictions":[-0.0, 18446744073709551615, -9223372036854775808]}"#,
    ];
    let configs = [
        checker(""),
        checker("sanity: { probabilities: true }"),
        checker("sanity: { probabilities: true, probabilityEpsilon: 1.5 }"),
    ];
    for c in &configs {
        for body in bodies {
            for instances in [None, Some(0), Some(1), Some(2)] {
                let streamed = c.check(Kind::KserveV1, instances, body.as_bytes());
                let tree = c.check_tree(Kind::KserveV1, instances, body.as_bytes());
                assert_eq!(streamed, tree, "body {body} instances {instances:?}");
            }
        }
        let invalid_utf8 = b"{\"predictions\":[1],\"x\":\"\xff\"}";
        assert_eq!(
            c.check(Kind::KserveV1, None, invalid_utf8),
            c.check_tree(Kind::KserveV1, None, invalid_utf8)
        );
    }
    // The streamed path really ran on the common case (and not only the fallback).
    assert!(kserve_v1::summarize(br#"{"predictions":[[0.2,0.8]]}"#, 1e-3).is_some());
    assert!(kserve_v1::summarize(br#"{"predictions":[NaN]}"#, 1e-3).is_none());
}

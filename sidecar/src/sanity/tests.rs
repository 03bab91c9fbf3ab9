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
    // Each datatype's range, at its edges (the OIP v2 tensor data types).
    let typed = |datatype: &str, data: &str| {
        let body = format!(
            r#"{{"outputs":[{{"name":"probs","shape":[2],"datatype":"{datatype}","data":{data}}}]}}"#
        );
        failed(&c, k, None, &body)
    };
    for (datatype, fits, misfits) in [
        ("INT8", "[-128,127]", "[-129,0]"),
        ("INT8", "[0,127]", "[0,128]"),
        ("UINT8", "[0,255]", "[-1,0]"),
        ("UINT8", "[0,255]", "[0,256]"),
        (
            "INT64",
            "[-9223372036854775808,9223372036854775807]",
            "[0,9223372036854775808]",
        ),
        ("UINT64", "[0,18446744073709551615]", "[0,1.5]"),
        ("FP32", "[1,0.5]", "[true,0.5]"),
        ("BOOL", "[true,false]", "[true,1]"),
        ("BYTES", r#"["a","b"]"#, r#"["a",1]"#),
    ] {
        assert!(typed(datatype, fits).is_empty(), "{datatype} {fits}");
        assert_eq!(
            typed(datatype, misfits),
            ["datatype"],
            "{datatype} {misfits}"
        );
    }
    assert_eq!(typed("FP64", "[null,0.5]"), ["non_finite"]);
    assert_eq!(typed("STRING", "[1,2]"), ["datatype"]);
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

/// The streamed OIP v2 path must find exactly what the JSON-tree path finds.
#[test]
fn oip_v2_streamed_checks_match_the_tree() {
    let out = |name: &str, shape: &str, datatype: &str, data: &str| {
        format!(r#"{{"name":{name},"shape":{shape},"datatype":{datatype},"data":{data}}}"#)
    };
    let mut bodies: Vec<String> = Vec::new();
    for datatype in [
        r#""FP32""#,
        r#""FP64""#,
        r#""BF16""#,
        r#""INT8""#,
        r#""INT64""#,
        r#""UINT8""#,
        r#""UINT64""#,
        r#""BOOL""#,
        r#""BYTES""#,
        r#""STRING""#,
        "null",
        "7",
    ] {
        for (shape, data) in [
            ("[2,2]", "[0.1,0.9,0.5,0.5]"),
            ("[2,2]", "[[0.1,0.9],[0.5,0.5]]"),
            ("[2,2]", "[0.1,0.9,0.5]"),
            ("[2]", "[null,0.5]"),
            ("[3]", "[1,300,-129]"),
            ("[2]", "[-128,127]"),
            ("[2]", "[0,255]"),
            ("[2]", "[-1,256]"),
            ("[3]", "[18446744073709551615,-9223372036854775808,1e400]"),
            ("[2]", "[true,false]"),
            ("[2]", r#"["a","b\n"]"#),
            ("[1]", "null"),
            ("[0]", "[]"),
            ("[0,5]", "[]"),
            ("[2]", r#"[{"a":1},2]"#),
            ("[2]", "[NaN,1]"),
            ("[-1]", "[1]"),
            ("[1.5]", "[1]"),
            ("null", "[1]"),
            ("\"2\"", "[1,2]"),
            ("[4294967296,4294967296]", "[1]"),
        ] {
            for name in [r#""probs""#, r#""other""#, "null", r#""pr\u006fbs""#] {
                bodies.push(format!(
                    r#"{{"outputs":[{}]}}"#,
                    out(name, shape, datatype, data)
                ));
            }
        }
    }
    let probs = out(r#""probs""#, "[1]", r#""FP32""#, "[0.5]");
    for body in [
        format!(r#"{{"model_name":"m","id":"1","outputs":[{probs},{probs}],"x":{{"y":[null]}}}}"#),
        format!(r#"{{"outputs":[{probs}],"outputs":[]}}"#),
        format!(r#"{{"outputs":[],"outputs":[{probs}]}}"#),
        r#"{"outputs":[{"name":"probs","name":"x","shape":[1],"datatype":"FP32","data":[1]}]}"#
            .to_string(),
        r#"{"outputs":[{"shape":[1],"datatype":"FP32"}]}"#.to_string(),
        r#"{"outputs":[{"data":[1],"datatype":"FP32"}]}"#.to_string(),
        r#"{"outputs":[[1]]}"#.to_string(),
        r#"{"outputs":[1, {"name":"probs"}]}"#.to_string(),
        format!(r#"[{probs}]"#),
        format!(r#"{{"outputs":{probs}}}"#),
        r#"{"outputs":[]}"#.to_string(),
        r#"{"outputs":null}"#.to_string(),
        r#"{"outputs":"x"}"#.to_string(),
        r#"{"outp\u0075ts":[]}"#.to_string(),
        "{}".to_string(),
        "[]".to_string(),
        "null".to_string(),
        "3".to_string(),
        format!(r#"{{"outputs":[{probs}],"note":"\ud800"}}"#),
        format!(r#"{{"outputs":[{probs}]}} trailing"#),
        format!(r#"{{"outputs":[{probs}],}}"#),
        "<html>".to_string(),
        String::new(),
    ] {
        bodies.push(body);
    }
    let configs = [
        checker(""),
        checker("sanity: { expectedOutputs: [probs] }"),
        checker("sanity: { expectedOutputs: [probs, other] }"),
    ];
    for c in &configs {
        for body in &bodies {
            let streamed = c.check(Kind::OipV2, None, body.as_bytes());
            let tree = c.check_tree(Kind::OipV2, None, body.as_bytes());
            assert_eq!(streamed, tree, "body {body}");
        }
        let invalid_utf8 = b"{\"outputs\":[],\"x\":\"\xff\"}";
        assert_eq!(
            c.check(Kind::OipV2, None, invalid_utf8),
            c.check_tree(Kind::OipV2, None, invalid_utf8)
        );
    }
    // The streamed path really ran on the common cases (and not only the fallback).
    let common = format!(r#"{{"model_name":"m","outputs":[{probs}]}}"#);
    assert!(oip_v2::summarize(common.as_bytes()).is_some());
    assert!(oip_v2::summarize(br#"{"outputs":[]}"#).is_some());
    assert!(oip_v2::summarize(br#"{"outputs":[{"data":[NaN]}]}"#).is_none());
}

//! Bad input, tried on purpose: property tests of the expiry classifier, the token-answer
//! parser and the layer's peek path over arbitrary bytes, headers and JSON.
//!
//! Each property says "never panics" and more: the classifier agrees with an independent
//! oracle built on `serde_json::Value`, the parser reads every lenient shape Douyin sends and
//! never repeats a token in an error, and the caller always gets the response body byte for
//! byte. The case counts are set per property (`CASES_*`) and add up to the number in the
//! report; together they run in a few seconds.

mod support;

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use douyin_auth::douyin::codes::{DEFAULT_EXPIRY_CODES, DEFAULT_EXPIRY_SUB_CODES};
use douyin_auth::douyin::parse_token_response;
use douyin_auth::expiry::{is_json, ClassifyExpiry, DouyinExpiry, GrpcExpiry, HeadVerdict};
use douyin_auth::{DouyinAuthLayer, Error};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tower::{Layer, ServiceExt};

const CASES_BYTES: u32 = 4096;
const CASES_JSON: u32 = 2048;
const CASES_HEADERS: u32 = 2048;
const CASES_PARSE_BYTES: u32 = 4096;
const CASES_PARSE_ANSWERS: u32 = 2048;
const CASES_PARSE_MUTATED: u32 = 2048;
const CASES_LAYER: u32 = 512;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ----- the oracle -----

/// A code as the classifier reads it: a number, or a string holding one.
fn oracle_code(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_u64().and_then(|u| i64::try_from(u).ok()).or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                    .map(|f| f as i64)
            })
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn oracle_expired(v: &Value) -> bool {
    let Value::Object(top) = v else {
        return false;
    };
    let field = |obj: Option<&Value>, key: &str| match obj {
        Some(Value::Object(o)) => o.get(key).and_then(oracle_code),
        _ => None,
    };
    let hit = |c: Option<i64>| c.is_some_and(|c| c != 0 && DEFAULT_EXPIRY_CODES.contains(&c));
    hit(field(top.get("data"), "error_code"))
        || hit(field(top.get("extra"), "error_code"))
        || hit(top.get("err_no").and_then(oracle_code))
        // The places the official SDK's error reader looks as well.
        || hit(top.get("errcode").and_then(oracle_code))
        || hit(top.get("error_code").and_then(oracle_code))
        || hit(top.get("errno").and_then(oracle_code))
        || hit(top.get("error").and_then(oracle_code))
        || hit(field(top.get("err"), "err_code"))
        || field(top.get("extra"), "sub_error_code")
            .is_some_and(|c| c != 0 && DEFAULT_EXPIRY_SUB_CODES.contains(&c))
}

// ----- strategies -----

fn code_value() -> impl Strategy<Value = Value> {
    let known = prop::sample::select(
        [
            0i64, 2_190_008, 10_008, 28_001_008, 2_190_002, 28_001_003, 40_004, 11_002, 10_010,
            2_190_004, 28_003_018, -2_190_008,
        ]
        .to_vec(),
    );
    prop_oneof![
        known.clone().prop_map(|c| json!(c)),
        known.clone().prop_map(|c| json!(c.to_string())),
        known.clone().prop_map(|c| json!(format!("  {c}\t"))),
        known.prop_map(|c| json!(c as f64)),
        any::<i64>().prop_map(|c| json!(c)),
        any::<u64>().prop_map(|c| json!(c)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        Just(json!(null)),
        Just(json!(true)),
        Just(json!("<nil>")),
        Just(json!([2_190_008])),
        Just(json!({"error_code": 2_190_008})),
    ]
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(
            ["data", "extra", "err_no", "error_code", "sub_error_code", "description", "logid",
             "errcode", "errno", "error", "err", "err_code"]
                .to_vec()
        )
        .prop_map(str::to_owned),
        1 => "[a-z_]{0,8}",
        1 => any::<String>(),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        3 => code_value(),
        1 => any::<String>().prop_map(Value::String),
        1 => Just(Value::Null),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A Douyin-like body: a top-level object whose `data`, `extra`, `err_no` and the SDK's other
/// places (`errcode`, `error_code`, `errno`, `error`, `err.err_code`) may hold codes.
fn douyin_body() -> impl Strategy<Value = Value> {
    (
        prop::option::of(json_value()),
        prop::option::of(json_value()),
        prop::option::of(code_value()),
        prop::option::of((code_value(), code_value())),
        json_value(),
        prop::collection::vec(
            (
                prop::sample::select(vec!["errcode", "error_code", "errno", "error", "err"]),
                code_value(),
            ),
            0..3,
        ),
    )
        .prop_map(|(data, extra, err_no, codes, noise, more)| {
            let mut top = Map::new();
            if let Some(mut d) = data {
                if let (Some((c, _)), Value::Object(o)) = (&codes, &mut d) {
                    o.insert("error_code".into(), c.clone());
                }
                top.insert("data".into(), d);
            }
            if let Some(mut e) = extra {
                if let (Some((_, s)), Value::Object(o)) = (&codes, &mut e) {
                    o.insert("sub_error_code".into(), s.clone());
                }
                top.insert("extra".into(), e);
            }
            if let Some(n) = err_no {
                top.insert("err_no".into(), n);
            }
            top.insert("noise".into(), noise);
            for (place, code) in more {
                let v = if place == "err" {
                    json!({ "err_code": code, "err_msg": "m" })
                } else {
                    code
                };
                top.insert(place.into(), v);
            }
            Value::Object(top)
        })
}

// ----- the classifier -----

proptest! {
    #![proptest_config(config(CASES_BYTES))]

    /// Arbitrary bytes: never panics, and agrees with the oracle whenever they are JSON.
    #[test]
    fn classifier_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let c = DouyinExpiry::default();
        let got = c.body_means_expired(&bytes);
        if let Ok(v) = serde_json::from_slice::<Value>(&bytes) {
            prop_assert_eq!(got, oracle_expired(&v));
        } else {
            prop_assert!(!got);
        }
    }
}

proptest! {
    #![proptest_config(config(CASES_JSON))]

    /// Arbitrary JSON in Douyin's shapes, compact or pretty, whole or cut short.
    #[test]
    fn classifier_on_arbitrary_json(v in douyin_body(), pretty in any::<bool>(), cut in any::<prop::sample::Index>()) {
        let c = DouyinExpiry::default();
        let bytes = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
        prop_assert_eq!(c.body_means_expired(&bytes), oracle_expired(&v), "{}", String::from_utf8_lossy(&bytes));
        prop_assert_eq!(c.classify_body(StatusCode::OK, &HeaderMap::new(), &bytes), oracle_expired(&v));
        // A body cut short is never "expired" unless its prefix is itself valid JSON.
        let short = &bytes[..cut.index(bytes.len())];
        let got = c.body_means_expired(short);
        match serde_json::from_slice::<Value>(short) {
            Ok(v) => prop_assert_eq!(got, oracle_expired(&v)),
            Err(_) => prop_assert!(!got),
        }
    }
}

/// Pieces of Douyin-like JSON, to glue into bodies that are valid, nearly valid or not at all:
/// code keys in and out of place, inside strings, escaped, with zero, expiry and odd codes.
fn adversarial_body() -> impl Strategy<Value = Vec<u8>> {
    let pieces = prop::sample::select(vec![
        "{",
        "}",
        "[",
        "]",
        ",",
        ":",
        " ",
        "\n",
        "\"",
        "\\",
        "\\u0065",
        "\\\"",
        "\"data\"",
        "\"extra\"",
        "\"err\"",
        "\"error_code\"",
        "\"sub_error_code\"",
        "\"err_no\"",
        "\"errcode\"",
        "\"errno\"",
        "\"error\"",
        "\"err_code\"",
        "\"\\u0065rror_code\"",
        "\"e\\u0072\\u0072or_code\"",
        "\"error\\u005Fcode\"",
        "\"e\\u0052ror_code\"",
        "\\u0026",
        "\\u4e2d",
        "\\u00",
        "\\\\u0065",
        "rr",
        "e",
        "0",
        "-0",
        "2190008",
        "\"2190008\"",
        "\" 2190002 \"",
        "2190008.0",
        "2.190008e6",
        "40004",
        "11002",
        "1e400",
        "99999999999999999999",
        "null",
        "true",
        "\"x\"",
        "{}",
        "[]",
        "{\"data\":{\"error_code\":",
        "{\"err_no\":",
        "{\"extra\":{\"sub_error_code\":",
    ]);
    prop::collection::vec(pieces, 0..40).prop_map(|v| v.concat().into_bytes())
}

proptest! {
    #![proptest_config(config(CASES_JSON))]

    /// The scan that settles most answers without a parse agrees with the structured reader
    /// on every input: Douyin-shaped JSON (with a key escaped or not), glued fragments, and
    /// fragments spliced into valid bodies.
    #[test]
    fn the_scan_agrees_with_the_structured_reader(
        v in douyin_body(),
        escape in prop::sample::select(vec![
            None,
            Some("\"\\u0065rror_code\""),
            Some("\"e\\u0072\\u0072or_code\""),
            Some("\"error\\u005fcode\""),
            Some("\"error_c\\u006Fde\""),
        ]),
        frag in adversarial_body(),
        at in any::<prop::sample::Index>(),
    ) {
        let c = DouyinExpiry::default();
        let mut bytes = serde_json::to_vec(&v).unwrap();
        if let Some(escaped) = escape {
            let text = String::from_utf8(bytes.clone()).unwrap();
            bytes = text.replacen("\"error_code\"", escaped, 1).into_bytes();
        }
        prop_assert_eq!(c.body_rejection(&bytes), c.parsed_rejection(&bytes));
        prop_assert_eq!(c.body_rejection(&frag), c.parsed_rejection(&frag), "{}", String::from_utf8_lossy(&frag));
        let i = at.index(bytes.len() + 1);
        let mut spliced = bytes[..i].to_vec();
        spliced.extend_from_slice(&frag);
        spliced.extend_from_slice(&bytes[i..]);
        prop_assert_eq!(c.body_rejection(&spliced), c.parsed_rejection(&spliced));
    }
}

fn oracle_is_json(value: &[u8]) -> bool {
    let Ok(s) = std::str::from_utf8(value) else {
        return false;
    };
    let mime = s.split(';').next().unwrap_or("").trim();
    let Some((_, sub)) = mime.split_once('/') else {
        return false;
    };
    let sub = sub.to_ascii_lowercase();
    sub == "json" || (sub.len() > 5 && sub.ends_with("+json"))
}

fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..40),
        prop::sample::select(
            [
                "application/json",
                "Application/JSON; charset=utf-8",
                "text/json",
                "application/problem+json",
                "application/+json",
                "application/jsonp",
                "json",
                "/json",
                "application/json\u{0}",
                " application/json ;",
                "text/html",
            ]
            .to_vec()
        )
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

proptest! {
    #![proptest_config(config(CASES_HEADERS))]

    /// Arbitrary statuses and content types (any bytes a header may hold, UTF-8 or not).
    #[test]
    fn classify_head_on_arbitrary_headers(
        status in 100u16..1000,
        content_type in header_bytes(),
        grpc in prop::option::of(prop::collection::vec(any::<u8>(), 0..4)),
    ) {
        let status = StatusCode::from_u16(status).unwrap();
        let mut headers = HeaderMap::new();
        let ct = HeaderValue::from_bytes(&content_type).ok();
        if let Some(v) = &ct {
            headers.insert(http::header::CONTENT_TYPE, v.clone());
        }
        let grpc = grpc.and_then(|g| HeaderValue::from_bytes(&g).ok());
        if let Some(g) = &grpc {
            headers.insert("grpc-status", g.clone());
        }
        let json = ct.as_ref().is_some_and(|v| oracle_is_json(v.as_bytes()));
        prop_assert_eq!(is_json(&headers), json);
        let expected = if status == StatusCode::UNAUTHORIZED {
            HeadVerdict::Expired
        } else if json {
            HeadVerdict::PeekBody
        } else {
            HeadVerdict::NotExpired
        };
        prop_assert_eq!(DouyinExpiry::default().classify_head(status, &headers), expected);
        let grpc16 = grpc.as_ref().is_some_and(|g| g.as_bytes() == b"16");
        let expected = if grpc16 || status == StatusCode::UNAUTHORIZED {
            HeadVerdict::Expired
        } else {
            HeadVerdict::NotExpired
        };
        prop_assert_eq!(GrpcExpiry.classify_head(status, &headers), expected);
    }
}

// ----- the token-answer parser -----

proptest! {
    #![proptest_config(config(CASES_PARSE_BYTES))]

    /// Arbitrary bytes: never panics; an error is a short Douyin or protocol error.
    #[test]
    fn parser_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = parse_token_response(&bytes) {
            prop_assert!(matches!(e, Error::Douyin(_) | Error::Protocol(_)), "{e:?}");
            if let Error::Protocol(m) = &e {
                prop_assert!(m.len() < 120, "{m}");
            }
        }
    }
}

/// A number as Douyin may send it: a number or a numeric string.
fn lenient(n: i64) -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!(n)),
        Just(json!(n.to_string())),
        Just(json!(format!(" {n} ")))
    ]
}

const SECRET_AT: &str = "act.PROPSECRET";
const SECRET_RT: &str = "rft.PROPSECRET";

fn token_answer() -> impl Strategy<Value = (Value, i64, u64)> {
    (
        0u64..10_000_000,
        prop::sample::select(vec![0i64, 0, 0, 2_100_004, 10_010, 10_020, 2_190_008]),
        prop::sample::select(vec![
            "data",
            "extra",
            "err_no",
            "errcode",
            "error_code",
            "errno",
            "error",
            "err",
        ]),
        json_value(),
        any::<bool>(),
    )
        .prop_flat_map(|(expires, code, place, noise, nil)| {
            (
                lenient(expires as i64),
                lenient(code),
                Just((expires, code, place, noise, nil)),
            )
        })
        .prop_map(|(expires_v, code_v, (expires, code, place, noise, nil))| {
            let mut data = json!({
                "access_token": SECRET_AT,
                "refresh_token": SECRET_RT,
                "expires_in": expires_v,
                "open_id": "open-1",
                "scope": "user_info,video.list",
                "description": "",
                "unknown": noise,
            });
            let mut top = json!({"data": {}, "message": if nil { "<nil>" } else { "success" }});
            match place {
                "data" => data["error_code"] = code_v,
                "extra" => top["extra"] = json!({"error_code": code_v, "logid": "L", "now": 1}),
                "err" => top["err"] = json!({"err_code": code_v, "err_msg": "m"}),
                other => top[other] = code_v,
            }
            top["data"] = data;
            (top, code, expires)
        })
}

proptest! {
    #![proptest_config(config(CASES_PARSE_ANSWERS))]

    /// Every lenient shape of a token answer: numbers or numeric strings, `<nil>` messages,
    /// unknown fields of any shape, the error code in each of its places.
    #[test]
    fn parser_reads_every_lenient_shape((v, code, expires) in token_answer()) {
        let bytes = serde_json::to_vec(&v).unwrap();
        match parse_token_response(&bytes) {
            Ok(answer) => {
                prop_assert_eq!(code, 0);
                prop_assert_eq!(answer.access_token(), Some(SECRET_AT));
                prop_assert_eq!(answer.refresh_token(), Some(SECRET_RT));
                prop_assert_eq!(answer.expires_in(), Some(std::time::Duration::from_secs(expires)));
                prop_assert_eq!(answer.open_id(), Some("open-1"));
                prop_assert_eq!(answer.scopes(), vec!["user_info".to_owned(), "video.list".to_owned()]);
                let shown = format!("{answer:?}");
                prop_assert!(!shown.contains("PROPSECRET"), "{}", shown);
            }
            Err(e) => {
                prop_assert_eq!(e.douyin().map(|d| d.code()), Some(code), "{:?}", e);
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains("PROPSECRET"), "{}", shown);
            }
        }
    }
}

proptest! {
    #![proptest_config(config(CASES_PARSE_MUTATED))]

    /// Token answers cut short, with bytes flipped or spliced in: never panics, and no error
    /// or `Debug` ever repeats the tokens the body held.
    #[test]
    fn parser_on_mutated_answers(
        (v, _, _) in token_answer(),
        cut in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        cut_it in any::<bool>(),
    ) {
        let mut bytes = serde_json::to_vec(&v).unwrap();
        for (at, b) in flips {
            let i = at.index(bytes.len());
            bytes[i] = b;
        }
        if cut_it {
            bytes.truncate(cut.index(bytes.len()));
        }
        match parse_token_response(&bytes) {
            Ok(answer) => {
                let shown = format!("{answer:?}");
                prop_assert!(!shown.contains("PROPSECRET"), "{}", shown);
            }
            Err(e) => {
                let shown = format!("{e} {e:?}");
                prop_assert!(!shown.contains("PROPSECRET"), "{}", shown);
            }
        }
    }
}

// ----- the layer's peek path -----

fn frames_of(body: &[u8], cuts: &[prop::sample::Index]) -> Vec<Bytes> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c.index(body.len() + 1)).collect();
    points.push(0);
    points.push(body.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| Bytes::copy_from_slice(&body[w[0]..w[1]]))
        .collect()
}

fn response_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        douyin_body().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        prop::collection::vec(any::<u8>(), 0..256),
    ]
}

proptest! {
    #![proptest_config(config(CASES_LAYER))]

    /// Whatever the status, content type, body and framing, the caller gets the body byte for
    /// byte; the request is sent twice exactly when the classifier says "expired" on a body
    /// within the peek limit, and never three times.
    #[test]
    fn the_layer_hands_back_every_body_byte_for_byte(
        status in prop::sample::select(vec![200u16, 201, 400, 401, 403, 500]),
        content_type in header_bytes(),
        body in response_body(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..6),
        peek_limit in prop::sample::select(vec![0usize, 1, 16, 64, 4096]),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().start_paused(true).build().unwrap();
        let frames = frames_of(&body, &cuts);
        let calls = Arc::new(AtomicUsize::new(0));
        let (c2, f2, ct) = (calls.clone(), frames.clone(), content_type.clone());
        let inner = tower::service_fn(move |_r: Request<Full<Bytes>>| {
            c2.fetch_add(1, Ordering::SeqCst);
            let frames = f2.clone();
            let mut res = Response::builder().status(status);
            if let Ok(v) = HeaderValue::from_bytes(&ct) {
                res = res.header(http::header::CONTENT_TYPE, v);
            }
            let stream = futures_util::stream::iter(
                frames.into_iter().map(|b| Ok::<_, Infallible>(http_body::Frame::data(b))),
            );
            let res = res.body(StreamBody::new(stream).boxed()).unwrap();
            async move { Ok::<_, Infallible>(res) }
        });
        // A new token on each fetch, so a rejected one is replaced by another (a source that
        // hands the same one back is not retried with it).
        let fetches = Arc::new(AtomicUsize::new(0));
        let source = douyin_auth::source_fn(move || {
            let n = fetches.fetch_add(1, Ordering::SeqCst);
            async move { Ok(douyin_auth::Token::new(format!("clt.prop{n}"), std::time::Duration::from_secs(3600))) }
        });
        let svc = DouyinAuthLayer::builder(source)
            .peek_limit(peek_limit)
            .build()
            .layer(inner);
        let got = rt.block_on(async {
            let res = svc.oneshot(support::req("{}")).await.unwrap();
            res.into_body().collect().await.unwrap().to_bytes()
        });
        prop_assert_eq!(&got[..], &body[..]);
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&content_type) {
            headers.insert(http::header::CONTENT_TYPE, v);
        }
        let c = DouyinExpiry::default();
        let status = StatusCode::from_u16(status).unwrap();
        let expired = match c.classify_head(status, &headers) {
            HeadVerdict::Expired => true,
            HeadVerdict::NotExpired => false,
            HeadVerdict::PeekBody => body.len() <= peek_limit && c.body_means_expired(&body),
        };
        prop_assert_eq!(calls.load(Ordering::SeqCst), if expired { 2 } else { 1 });
    }
}

// ----- deterministic edges: nesting, size -----

/// Deeply nested bodies, with the expiry code inside them: the classifier never overflows the
/// stack, never says "expired" for a code that is not where Douyin puts it, and agrees with
/// serde_json (and its nesting limit) for a code that is.
#[test]
fn deep_nesting_neither_overflows_the_stack_nor_misplaces_a_code() {
    let c = DouyinExpiry::default();
    for depth in [1usize, 126, 127, 128, 129, 1_000, 100_000] {
        // The code nested deep inside `data`: not Douyin's place for it.
        let buried = format!(
            "{{\"data\":{}{{\"error_code\":2190008}}{}}}",
            "{\"x\":".repeat(depth),
            "}".repeat(depth)
        );
        assert!(!c.body_means_expired(buried.as_bytes()), "depth {depth}");
        let _ = parse_token_response(buried.as_bytes());
        // The code in its place, beside a deeply nested value.
        let beside = format!(
            "{{\"data\":{{\"error_code\":2190008,\"deep\":{}{}}}}}",
            "[".repeat(depth),
            "]".repeat(depth)
        );
        // The code is in its place whatever the nesting of the value beside it: the
        // classifier skips that value without building it (nor recursing into the stack), so
        // it says "expired" at every depth, where serde_json's own reader agrees up to its
        // nesting limit and refuses past it.
        let expired = c.body_means_expired(beside.as_bytes());
        assert!(expired, "depth {depth}");
        if depth <= 125 {
            let reference = serde_json::from_str::<serde_json::Value>(&beside)
                .is_ok_and(|v| v["data"]["error_code"] == 2_190_008);
            assert!(reference, "depth {depth}");
        }
        let _ = parse_token_response(beside.as_bytes());
    }
}

#[test]
fn a_large_body_with_the_code_at_its_end_is_classified() {
    let c = DouyinExpiry::default();
    let mut big = String::from("{\"pad\":\"");
    big.push_str(&"x".repeat(4 << 20));
    big.push_str("\",\"err_no\":28001008}");
    assert!(c.body_means_expired(big.as_bytes()));
    let err = parse_token_response(big.as_bytes()).unwrap_err();
    assert_eq!(err.douyin().map(|d| d.code()), Some(28_001_008));
}

//! The expiry classifier over arbitrary input: the first bytes choose a status and a
//! content type, the rest is the body. It must never panic, it must agree with itself
//! whichever way it is asked, and on the whole input it must agree with a reference built on
//! `serde_json::Value` that reads every place Douyin puts a code.
#![no_main]

use douyin_auth::douyin::codes::{DEFAULT_EXPIRY_CODES, DEFAULT_EXPIRY_SUB_CODES};
use douyin_auth::expiry::{is_json, ClassifyExpiry, DouyinExpiry, GrpcExpiry, HeadVerdict};
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A code as the classifier reads it: a number, or a string holding one.
fn code(v: &Value) -> Option<i64> {
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

/// The reference: any place holds a non-zero expiry code (or the sub-code place a sub-code).
fn reference(body: &[u8]) -> Option<bool> {
    let Value::Object(top) = serde_json::from_slice::<Value>(body).ok()? else {
        return Some(false);
    };
    let field = |obj: Option<&Value>, key: &str| match obj {
        Some(Value::Object(o)) => o.get(key).and_then(code),
        _ => None,
    };
    let hit = |c: Option<i64>| c.is_some_and(|c| c != 0 && DEFAULT_EXPIRY_CODES.contains(&c));
    Some(
        hit(field(top.get("data"), "error_code"))
            || hit(field(top.get("extra"), "error_code"))
            || ["err_no", "errcode", "error_code", "errno", "error"]
                .iter()
                .any(|k| hit(top.get(*k).and_then(code)))
            || hit(field(top.get("err"), "err_code"))
            || field(top.get("extra"), "sub_error_code")
                .is_some_and(|c| c != 0 && DEFAULT_EXPIRY_SUB_CODES.contains(&c)),
    )
}

fuzz_target!(|data: &[u8]| {
    let classifier = DouyinExpiry::default();
    let expired = classifier.body_means_expired(data);
    // The scan that settles most answers without a parse agrees with the structured reader.
    assert_eq!(
        classifier.body_rejection(data),
        classifier.parsed_rejection(data),
        "the scan disagrees with the structured reader"
    );
    // serde_json's `Value` and the classifier's streaming reader differ only on inputs the
    // reader rejects as a whole (duplicate keys keep the last value in both).
    if let Some(want) = reference(data) {
        assert_eq!(expired, want, "the classifier disagrees with the reference");
    }

    // Split: [status hi, status lo, content-type length, content type..., body...]
    let (status, rest) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    let status = StatusCode::from_u16(100 + status % 900).unwrap_or(StatusCode::OK);
    let (ct, body) = match rest.split_first() {
        Some((&n, tail)) => tail.split_at(usize::from(n).min(tail.len())),
        None => (&[][..], rest),
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(ct) {
        headers.insert(http::header::CONTENT_TYPE, v.clone());
        headers.insert("grpc-status", v);
    }
    let verdict = classifier.classify_head(status, &headers);
    assert_eq!(
        verdict == HeadVerdict::Expired,
        status == StatusCode::UNAUTHORIZED
    );
    if status != StatusCode::UNAUTHORIZED {
        assert_eq!(verdict == HeadVerdict::PeekBody, is_json(&headers));
    }
    let _ = GrpcExpiry.classify_head(status, &headers);
    assert_eq!(
        classifier.classify_body(status, &headers, body),
        classifier.body_means_expired(body)
    );
    if let Some(want) = reference(body) {
        assert_eq!(
            classifier.body_means_expired(body),
            want,
            "the classifier disagrees with the reference"
        );
    }
    let _ = expired;
});

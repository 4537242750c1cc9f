//! The expiry classifier over arbitrary input: the first bytes choose a status and a
//! content type, the rest is the body. It must never panic, and it must agree with itself
//! whichever way it is asked.
#![no_main]

use douyin_auth::expiry::{is_json, ClassifyExpiry, DouyinExpiry, GrpcExpiry, HeadVerdict};
use http::{HeaderMap, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let classifier = DouyinExpiry::default();
    let expired = classifier.body_means_expired(data);

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
    let _ = expired;
});

//! The token-answer parser over arbitrary bytes: it must never panic, and no error or
//! `Debug` output may repeat a token the body held.
#![no_main]

use douyin_auth::douyin::parse_token_response;
use douyin_auth::Error;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_token_response(data) {
        Ok(answer) => {
            let shown = format!("{answer:?}");
            if let Some(t) = answer.access_token().filter(|t| t.len() >= 8) {
                assert!(!shown.contains(t), "Debug shows the access token");
            }
            if let Some(t) = answer.refresh_token().filter(|t| t.len() >= 8) {
                assert!(!shown.contains(t), "Debug shows the refresh token");
            }
            let _ = answer.scopes();
            let _ = answer.expires_in();
        }
        Err(e) => {
            assert!(
                matches!(e, Error::Douyin(_) | Error::Protocol(_)),
                "unexpected error kind: {e:?}"
            );
            if let Error::Protocol(m) = &e {
                assert!(m.len() < 120, "a protocol error repeats the body");
            }
        }
    }
});

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
            // Each token field shows as redacted. (A plain substring search is not the test:
            // the fuzzer found `"scope": "u_r~~~~y…"` around an access token `~~~~y`, which
            // Debug rightly shows as part of the scope.)
            if answer.access_token().is_some() {
                assert!(
                    shown.contains(r#"access_token: Some("<redacted>")"#),
                    "Debug shows the access token"
                );
            }
            if answer.refresh_token().is_some() {
                assert!(
                    shown.contains(r#"refresh_token: Some("<redacted>")"#),
                    "Debug shows the refresh token"
                );
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

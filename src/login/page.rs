//! The default error page and HTML escaping.

use axum::response::{Html, IntoResponse, Response};
use http::header::{HeaderValue, CACHE_CONTROL};

use super::error::LoginError;

/// Escapes `text` for HTML element content and quoted attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// What the page tells the user, per error.
fn explain(err: &LoginError) -> (&'static str, String) {
    match err {
        LoginError::Denied { error, description } => (
            "Login cancelled",
            match description {
                Some(d) => format!("Douyin did not authorise the login ({error}): {d}"),
                None => format!("Douyin did not authorise the login ({error})."),
            },
        ),
        LoginError::MissingState => (
            "No login in progress",
            "This page was opened without a login in progress (it may have finished already, \
             or started in another browser). Please log in again."
                .into(),
        ),
        LoginError::InvalidState => (
            "Login refused",
            "The login could not be verified: it did not start in this browser, or it was \
             tampered with. Please log in again."
                .into(),
        ),
        LoginError::ExpiredState => (
            "Login expired",
            "The login took too long. Please log in again.".into(),
        ),
        LoginError::ReplayedState => (
            "Login already completed",
            "This login link was used already. Please log in again.".into(),
        ),
        LoginError::MissingCode => (
            "Login failed",
            "Douyin sent no authorization code. Please log in again.".into(),
        ),
        LoginError::CodeExpired(_) => (
            "Login expired",
            "The authorization from Douyin expired or was used already. Please log in again."
                .into(),
        ),
        LoginError::Exchange(_) => (
            "Login failed",
            "Douyin could not be reached or refused the login. Please try again later.".into(),
        ),
        LoginError::Store(_) => (
            "Login failed",
            "The login could not be saved. Please try again later.".into(),
        ),
        LoginError::Start(_) => (
            "Login failed",
            "The login could not be started. Please try again later.".into(),
        ),
    }
}

/// The default error page of `err`: its status, `Cache-Control: no-store`, and HTML with the
/// error's [`kind`](LoginError::kind) in `data-kind`, and a link to the login route next to
/// the callback.
pub(crate) fn error_page(err: &LoginError) -> Response {
    let (title, text) = explain(err);
    let body = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{title}</title></head>\
         <body style=\"font-family:sans-serif;max-width:32em;margin:3em auto\">\
         <main id=\"login-error\" data-kind=\"{kind}\"><h1>{title}</h1><p>{text}</p>\
         <p><a id=\"retry\" href=\"login\">Log in again</a></p></main></body></html>\n",
        kind = err.kind(),
        text = escape(&text),
    );
    let mut response = (err.status(), Html(body)).into_response();
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert('x') & "y"</script>"#),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }

    #[tokio::test]
    async fn the_page_escapes_what_douyin_sent() {
        let err = LoginError::Denied {
            error: "access_denied".into(),
            description: Some("<img src=x onerror=alert(1)>".into()),
        };
        let response = error_page(&err);
        assert_eq!(response.status(), http::StatusCode::FORBIDDEN);
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8(body.to_vec()).unwrap();
        assert!(body.contains("data-kind=\"denied\""), "{body}");
        assert!(body.contains("&lt;img src=x"), "{body}");
        assert!(!body.contains("<img"), "{body}");
    }
}

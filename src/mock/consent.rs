//! The consent page: `GET /platform/oauth/connect/` renders Douyin's "authorise this app" page;
//! its form posts the user's decision back to the same path, and the mock redirects the
//! browser to the app's `redirect_uri`.
//!
//! - **Allow** (`<button id="allow">`): a single-use code for the account typed on the page
//!   (default [`DEFAULT_OPEN_ID`]) and the scopes asked for (plus the ticked optional ones), as
//!   [`MockDouyin::authorize`](super::MockDouyin::authorize) makes; the redirect carries `code`
//!   and `state`.
//! - **Deny** (`<button id="deny">`): the redirect carries `error=access_denied`,
//!   `error_description` and `state`. Douyin's documentation does not say which parameters its
//!   page sends on a refusal (UNVERIFIED); the mock sends OAuth 2.0's (RFC 6749 4.1.2.1),
//!   which Douyin's login flow claims to follow, and
//!   [`DouyinLogin`](crate::login::DouyinLogin) also accepts a non-zero `error_code`.
//!
//! Invalid requests get an HTML error page with HTTP 400 and Douyin's code: a missing
//! `client_key` or `redirect_uri`, or a `response_type` other than `code` (2100005), an unknown
//! `client_key` (10003), a `redirect_uri` that is not `https://` (nor `http://` on a loopback
//! host) (10006, "illegal redirect URI").

use std::collections::HashMap;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;

use super::state::{State, PARAMETER_ERROR, UNKNOWN_CLIENT_KEY};

/// The account the consent page offers unless the user types another.
pub(crate) const DEFAULT_OPEN_ID: &str = "mock-open-id-1";

/// Douyin's "illegal redirect URI" code (its JS FAQ).
pub(crate) const ILLEGAL_REDIRECT_URI: i64 = 10_006;

/// The largest decision form the mock reads.
const FORM_LIMIT: usize = 64 * 1024;

/// A request the page accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Consent {
    client_key: String,
    redirect_uri: String,
    scopes: Vec<String>,
    /// `(scope, ticked by default)`.
    optional: Vec<(String, bool)>,
    state: Option<String>,
}

/// An invalid request: Douyin's code and why.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Refusal {
    code: i64,
    why: &'static str,
}

/// `GET` renders the page, `POST` takes the decision.
pub(crate) async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let mut params = params(req.uri().query().unwrap_or_default().as_bytes());
    match *req.method() {
        Method::GET | Method::HEAD => page(state, &params),
        Method::POST => {
            match Limited::new(req.into_body(), FORM_LIMIT).collect().await {
                Ok(body) => {
                    // The form's fields win over the query's.
                    params.extend(self::params(&body.to_bytes()));
                    decide(state, &params)
                }
                Err(_) => error_page(&Refusal {
                    code: PARAMETER_ERROR,
                    why: "the form could not be read",
                }),
            }
        }
        _ => error_page(&Refusal {
            code: PARAMETER_ERROR,
            why: "the authorization page takes GET (and POST for the decision)",
        }),
    }
}

fn params(bytes: &[u8]) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        out.entry(k.into_owned()).or_insert_with(|| v.into_owned());
    }
    out
}

fn check(state: &State, params: &HashMap<String, String>) -> Result<Consent, Refusal> {
    let get = |k: &str| params.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let client_key = get("client_key").ok_or(Refusal {
        code: PARAMETER_ERROR,
        why: "client_key is missing",
    })?;
    if client_key != state.config.client_key {
        return Err(Refusal {
            code: UNKNOWN_CLIENT_KEY,
            why: "client_key does not exist",
        });
    }
    if get("response_type") != Some("code") {
        return Err(Refusal {
            code: PARAMETER_ERROR,
            why: "response_type must be code",
        });
    }
    let redirect_uri = get("redirect_uri").ok_or(Refusal {
        code: PARAMETER_ERROR,
        why: "redirect_uri is missing",
    })?;
    if !redirect_allowed(redirect_uri) {
        return Err(Refusal {
            code: ILLEGAL_REDIRECT_URI,
            why: "redirect_uri must be an absolute https:// URL (http:// only on loopback)",
        });
    }
    let list = |s: Option<&str>| -> Vec<String> {
        s.unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let optional = list(get("optionalScope"))
        .chunks(2)
        .filter_map(|pair| match pair {
            [scope, flag] => Some((scope.clone(), flag == "1")),
            [scope] => Some((scope.clone(), false)),
            _ => None,
        })
        .collect();
    Ok(Consent {
        client_key: client_key.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scopes: list(get("scope")),
        optional,
        state: get("state").map(str::to_owned),
    })
}

fn redirect_allowed(uri: &str) -> bool {
    let Ok(parsed) = uri.parse::<Uri>() else {
        return false;
    };
    let Some(host) = parsed.host() else {
        return false;
    };
    match parsed.scheme_str() {
        Some("https") => true,
        Some("http") => crate::net::is_loopback(host),
        _ => false,
    }
}

fn page(state: &State, params: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let consent = match check(state, params) {
        Ok(c) => c,
        Err(refusal) => return error_page(&refusal),
    };
    let hidden = |name: &str, value: &str| {
        format!(
            "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
            escape(value)
        )
    };
    let mut fields = String::new();
    for (name, value) in [
        ("client_key", consent.client_key.as_str()),
        ("response_type", "code"),
        ("redirect_uri", consent.redirect_uri.as_str()),
        ("scope", &consent.scopes.join(",")),
    ] {
        fields.push_str(&hidden(name, value));
    }
    if let Some(s) = &consent.state {
        fields.push_str(&hidden("state", s));
    }
    if !consent.optional.is_empty() {
        let offered: Vec<String> = consent
            .optional
            .iter()
            .map(|(s, ticked)| format!("{s},{}", u8::from(*ticked)))
            .collect();
        fields.push_str(&hidden("optionalScope", &offered.join(",")));
    }
    let mut scopes = String::new();
    for s in &consent.scopes {
        scopes.push_str(&format!("<li class=\"scope\">{}</li>", escape(s)));
    }
    for (s, ticked) in &consent.optional {
        let checked = if *ticked { " checked" } else { "" };
        scopes.push_str(&format!(
            "<li class=\"scope optional\"><label><input type=\"checkbox\" \
             name=\"optional.{s}\" value=\"1\"{checked}> {s} (optional)</label></li>",
            s = escape(s)
        ));
    }
    if scopes.is_empty() {
        scopes.push_str("<li class=\"scope\">(no scope)</li>");
    }
    let body = format!(
        r#"<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>抖音授权 · Douyin authorization (mock)</title>
<style>
body{{margin:0;background:#161823;color:#fff;font-family:-apple-system,"PingFang SC","Noto Sans CJK SC",sans-serif}}
main{{max-width:420px;margin:48px auto;background:#fff;color:#161823;border-radius:12px;padding:32px}}
h1{{font-size:20px;margin:0 0 4px}} .app{{color:#fe2c55;font-weight:600;word-break:break-all}}
ul{{padding-left:20px}} li{{margin:6px 0}} label.account{{display:block;margin:16px 0 4px;font-size:14px}}
input[type=text]{{width:100%;box-sizing:border-box;padding:8px;border:1px solid #ccc;border-radius:6px}}
.buttons{{display:flex;gap:12px;margin-top:24px}}
button{{flex:1;padding:12px;border-radius:6px;font-size:16px;border:0;cursor:pointer}}
#allow{{background:#fe2c55;color:#fff}} #deny{{background:#f1f1f2;color:#161823}}
.note{{font-size:12px;color:#888;margin-top:16px}}
</style></head>
<body><main id="consent">
<h1>抖音授权 · Authorize</h1>
<p>应用 <span class="app" id="client-key">{client_key}</span> 申请获得以下权限:<br>The app asks for:</p>
<ul id="scopes">{scopes}</ul>
<form method="post" action="/platform/oauth/connect/">{fields}
<label class="account" for="open_id">抖音账号 (open_id) · Douyin account</label>
<input type="text" id="open_id" name="open_id" value="{open_id}">
<div class="buttons">
<button type="submit" id="deny" name="decision" value="deny">拒绝 · Deny</button>
<button type="submit" id="allow" name="decision" value="allow">同意授权 · Allow</button>
</div></form>
<p class="note">douyin-auth mock: no real Douyin account is involved.</p>
</main></body></html>
"#,
        client_key = escape(&consent.client_key),
        open_id = DEFAULT_OPEN_ID,
    );
    html(StatusCode::OK, body)
}

fn decide(state: &State, params: &HashMap<String, String>) -> Response<Full<Bytes>> {
    let consent = match check(state, params) {
        Ok(c) => c,
        Err(refusal) => return error_page(&refusal),
    };
    let mut back = form_urlencoded::Serializer::new(String::new());
    match params.get("decision").map(String::as_str) {
        Some("allow") => {
            let open_id = params
                .get("open_id")
                .map(|s| s.trim())
                .filter(|s| !s.is_empty())
                .unwrap_or(DEFAULT_OPEN_ID);
            let mut scopes = consent.scopes.clone();
            scopes.extend(ticked(params, &consent));
            let code = state.authorize(open_id.to_owned(), scopes);
            back.append_pair("code", &code);
        }
        Some("deny") => {
            back.append_pair("error", "access_denied");
            back.append_pair("error_description", "the user denied the authorization");
        }
        _ => {
            return error_page(&Refusal {
                code: PARAMETER_ERROR,
                why: "decision must be allow or deny",
            })
        }
    }
    if let Some(s) = &consent.state {
        back.append_pair("state", s);
    }
    let base = consent.redirect_uri.split('#').next().unwrap_or_default();
    let sep = if base.contains('?') { '&' } else { '?' };
    let target = format!("{base}{sep}{}", back.finish());
    let Ok(location) = HeaderValue::try_from(target) else {
        return error_page(&Refusal {
            code: ILLEGAL_REDIRECT_URI,
            why: "redirect_uri is not a valid header value",
        });
    };
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::FOUND;
    resp.headers_mut().insert(LOCATION, location);
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The optional scopes ticked in the form (a box `optional.<scope>` per offered scope).
fn ticked(params: &HashMap<String, String>, consent: &Consent) -> Vec<String> {
    consent
        .optional
        .iter()
        .filter(|(s, _)| params.contains_key(&format!("optional.{s}")))
        .map(|(s, _)| s.clone())
        .collect()
}

fn error_page(refusal: &Refusal) -> Response<Full<Bytes>> {
    let body = format!(
        "<!doctype html>\n<html lang=\"zh-CN\"><head><meta charset=\"utf-8\">\
         <title>授权失败 · Authorization failed</title></head><body>\
         <main id=\"consent-error\" data-code=\"{code}\"><h1>授权失败 · Authorization failed</h1>\
         <p>错误码 error_code: {code}</p><p>{why}</p></main></body></html>\n",
        code = refusal.code,
        why = escape(refusal.why),
    );
    html(StatusCode::BAD_REQUEST, body)
}

fn html(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    resp
}

fn escape(text: &str) -> String {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::mock::config::Config;

    fn state() -> State {
        State::new(Config {
            client_key: "ck".into(),
            client_secret: "cs".into(),
            client_token_lifetime: Duration::from_secs(7200),
            access_token_lifetime: Duration::from_secs(7200),
            refresh_token_lifetime: Duration::from_secs(7200),
            code_lifetime: Duration::from_secs(600),
            max_renewals: 5,
            rate_limit: 500,
            rate_window: Duration::from_secs(300),
            business_token_lifetime: Duration::from_secs(7200),
        })
    }

    fn query(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn good() -> Vec<(&'static str, &'static str)> {
        vec![
            ("client_key", "ck"),
            ("response_type", "code"),
            ("scope", "user_info,video.list"),
            ("redirect_uri", "https://app.example/cb"),
            ("state", "S<1>"),
            ("optionalScope", "mobile,1,friends,0"),
        ]
    }

    fn text(resp: Response<Full<Bytes>>) -> String {
        let bytes = futures_util::FutureExt::now_or_never(resp.into_body().collect())
            .unwrap()
            .unwrap()
            .to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn location(resp: &Response<Full<Bytes>>) -> (String, HashMap<String, String>) {
        assert_eq!(resp.status(), StatusCode::FOUND);
        let loc = resp.headers()[LOCATION].to_str().unwrap();
        let (base, q) = loc.split_once('?').unwrap();
        (base.to_owned(), params(q.as_bytes()))
    }

    #[test]
    fn the_page_shows_the_app_the_scopes_and_both_buttons() {
        let resp = page(&state(), &query(&good()));
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        let html = text(resp);
        for needle in [
            "<span class=\"app\" id=\"client-key\">ck</span>",
            "<li class=\"scope\">user_info</li>",
            "<li class=\"scope\">video.list</li>",
            "name=\"optional.mobile\" value=\"1\" checked>",
            "name=\"optional.friends\" value=\"1\">",
            "<button type=\"submit\" id=\"allow\" name=\"decision\" value=\"allow\">",
            "<button type=\"submit\" id=\"deny\" name=\"decision\" value=\"deny\">",
            "name=\"state\" value=\"S&lt;1&gt;\"",
            "name=\"redirect_uri\" value=\"https://app.example/cb\"",
            "name=\"optionalScope\" value=\"mobile,1,friends,0\"",
        ] {
            assert!(html.contains(needle), "{needle} in {html}");
        }
    }

    #[test]
    fn invalid_requests_get_an_error_page() {
        let st = state();
        let without = |name: &str| {
            let mut q = query(&good());
            q.remove(name);
            q
        };
        let with = |name: &str, value: &str| {
            let mut q = query(&good());
            q.insert(name.into(), value.into());
            q
        };
        for (what, q, code) in [
            ("no client_key", without("client_key"), PARAMETER_ERROR),
            (
                "unknown client_key",
                with("client_key", "other"),
                UNKNOWN_CLIENT_KEY,
            ),
            ("no redirect_uri", without("redirect_uri"), PARAMETER_ERROR),
            (
                "token response_type",
                with("response_type", "token"),
                PARAMETER_ERROR,
            ),
            (
                "no response_type",
                without("response_type"),
                PARAMETER_ERROR,
            ),
            (
                "plain http",
                with("redirect_uri", "http://app.example/cb"),
                ILLEGAL_REDIRECT_URI,
            ),
            (
                "relative",
                with("redirect_uri", "/cb"),
                ILLEGAL_REDIRECT_URI,
            ),
            (
                "javascript",
                with("redirect_uri", "javascript:alert(1)"),
                ILLEGAL_REDIRECT_URI,
            ),
        ] {
            for resp in [
                page(&st, &q),
                decide(&st, &{
                    let mut q = q.clone();
                    q.insert("decision".into(), "allow".into());
                    q
                }),
            ] {
                assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{what}");
                let html = text(resp);
                assert!(
                    html.contains(&format!("data-code=\"{code}\"")),
                    "{what}: {html}"
                );
            }
        }
        for ok in [
            "http://127.0.0.1:8080/cb",
            "http://localhost/cb",
            "http://[::1]:1/cb",
        ] {
            assert_eq!(
                page(&st, &with("redirect_uri", ok)).status(),
                StatusCode::OK,
                "{ok}"
            );
        }
        assert_eq!(st.counters().code_exchanges, 0);
    }

    #[test]
    fn allow_redirects_with_a_code_that_the_mock_exchanges() {
        let st = state();
        let mut q = query(&good());
        q.insert("decision".into(), "allow".into());
        q.insert("open_id".into(), "alice".into());
        q.insert("optional.friends".into(), "1".into());
        let resp = decide(&st, &q);
        assert_eq!(resp.headers()[CACHE_CONTROL], "no-store");
        let (base, back) = location(&resp);
        assert_eq!(base, "https://app.example/cb");
        assert_eq!(back["state"], "S<1>");
        assert!(!back.contains_key("error"));
        let data = st
            .exchange_code(&query(&[
                ("client_key", "ck"),
                ("client_secret", "cs"),
                ("code", &back["code"]),
                ("grant_type", "authorization_code"),
            ]))
            .unwrap();
        assert_eq!(data["open_id"], "alice");
        assert_eq!(data["scope"], "user_info,video.list,friends");
    }

    #[test]
    fn deny_redirects_with_the_error_and_the_state() {
        let st = state();
        let mut q = query(&good());
        q.insert("decision".into(), "deny".into());
        q.insert(
            "redirect_uri".into(),
            "https://app.example/cb?x=1#frag".into(),
        );
        let (base, back) = location(&decide(&st, &q));
        assert_eq!(base, "https://app.example/cb");
        assert_eq!(back["x"], "1");
        assert_eq!(back["error"], "access_denied");
        assert_eq!(
            back["error_description"],
            "the user denied the authorization"
        );
        assert_eq!(back["state"], "S<1>");
        assert!(!back.contains_key("code"));
        q.insert("decision".into(), "maybe".into());
        assert_eq!(decide(&st, &q).status(), StatusCode::BAD_REQUEST);
    }
}

//! The webhook envelope handed to the inner service, and the challenge answer.

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The envelope of a verified Douyin webhook delivery, put in the request's extensions by
/// [`VerifyWebhook`](super::VerifyWebhook) (read it in axum with
/// `Extension<WebhookEvent>`).
///
/// The body itself reaches the inner service byte for byte; this is a parsed copy of its common
/// fields. Fields a product does not send are empty (`""`, `None`, [`Value::Null`]); user ids
/// sent as numbers are given as their decimal text.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct WebhookEvent {
    /// The event type, e.g. `authorize`, `unauthorize`, `im_receive_msg`,
    /// `life_trade_order_notify`.
    pub event: String,
    /// The app the event is for (`client_key`, the "APPID" of the life-service apps).
    pub client_key: String,
    /// The user the event comes from (`from_user_id`), if any.
    pub from_user_id: Option<String>,
    /// The user the event is addressed to (`to_user_id`), if any.
    pub to_user_id: Option<String>,
    /// The event's `content` as sent: an object for most events, a string holding JSON for the
    /// life-service events (see [`WebhookEvent::content_json`]).
    pub content: Value,
    /// Douyin's log id (`log_id`), if any, to quote to Douyin's support.
    pub log_id: Option<String>,
    /// The delivery's `Msg-Id` header, if any: the same for Douyin's retries of one delivery.
    pub msg_id: Option<String>,
}

impl WebhookEvent {
    /// Parses the envelope of a delivery; `None` if the body is not a JSON object.
    pub(crate) fn parse(body: &[u8], msg_id: Option<String>) -> Option<Self> {
        let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(body) else {
            return None;
        };
        Some(Self {
            event: text(&mut map, "event").unwrap_or_default(),
            client_key: text(&mut map, "client_key").unwrap_or_default(),
            from_user_id: text(&mut map, "from_user_id"),
            to_user_id: text(&mut map, "to_user_id"),
            content: map.remove("content").unwrap_or(Value::Null),
            log_id: text(&mut map, "log_id"),
            msg_id,
        })
    }

    /// The content as JSON: the object as sent, or, when Douyin sent the content as a string
    /// (life-service events), that string parsed. `None` if it is a string that is not JSON.
    pub fn content_json(&self) -> Option<Value> {
        match &self.content {
            Value::String(s) => serde_json::from_str(s).ok(),
            other => Some(other.clone()),
        }
    }

    /// Whether this is Douyin's URL-verification call (`verify_webhook`).
    pub fn is_challenge(&self) -> bool {
        self.event == VERIFY_WEBHOOK
    }
}

/// The event name of Douyin's URL-verification call.
pub(crate) const VERIFY_WEBHOOK: &str = "verify_webhook";

fn text(map: &mut Map<String, Value>, key: &str) -> Option<String> {
    match map.remove(key)? {
        Value::String(s) => Some(s),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The answer to a `verify_webhook` call: `{"challenge":N}`, with `N` exactly as it was sent
/// (the raw JSON text: a number beyond 64 bits or a string is echoed unchanged). `None` if the
/// body carries no `content.challenge` (also looked for inside a content sent as a string).
pub(crate) fn challenge_answer(body: &[u8]) -> Option<Bytes> {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(borrow)]
        content: Option<&'a RawValue>,
    }
    #[derive(serde::Deserialize)]
    struct Content<'a> {
        #[serde(borrow)]
        challenge: Option<&'a RawValue>,
    }
    let content = serde_json::from_slice::<Envelope<'_>>(body).ok()?.content?;
    let raw_challenge = |json: &str| -> Option<String> {
        let challenge = serde_json::from_str::<Content<'_>>(json).ok()?.challenge?;
        Some(format!(r#"{{"challenge":{}}}"#, challenge.get()))
    };
    let answer = match serde_json::from_str::<String>(content.get()) {
        Ok(inner) => raw_challenge(&inner),
        Err(_) => raw_challenge(content.get()),
    }?;
    Some(Bytes::from(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_envelope_leniently() {
        let body = br#"{"event":"im_receive_msg","client_key":"ck","from_user_id":"u1",
            "to_user_id":42,"content":{"text":"hi"},"extra":1}"#;
        let event = WebhookEvent::parse(body, Some("m1".into())).expect("an object");
        assert_eq!(event.event, "im_receive_msg");
        assert_eq!(event.client_key, "ck");
        assert_eq!(event.from_user_id.as_deref(), Some("u1"));
        assert_eq!(event.to_user_id.as_deref(), Some("42"));
        assert_eq!(event.content, serde_json::json!({"text":"hi"}));
        assert_eq!(event.log_id, None);
        assert_eq!(event.msg_id.as_deref(), Some("m1"));
        assert!(!event.is_challenge());
        assert_eq!(WebhookEvent::parse(b"[1]", None), None);
        assert_eq!(WebhookEvent::parse(b"not json", None), None);
    }

    #[test]
    fn string_content_parses_as_json() {
        let body = br#"{"event":"life_trade_order_notify","content":"{\"action\":\"pay_success\"}","log_id":"L"}"#;
        let event = WebhookEvent::parse(body, None).expect("an object");
        assert_eq!(
            event.content_json(),
            Some(serde_json::json!({"action":"pay_success"}))
        );
        assert_eq!(event.log_id.as_deref(), Some("L"));
    }

    #[test]
    fn challenge_is_echoed_exactly() {
        let answer =
            |b: &[u8]| challenge_answer(b).map(|a| String::from_utf8_lossy(&a).into_owned());
        assert_eq!(
            answer(br#"{"event":"verify_webhook","content":{"challenge": 12345 }}"#).as_deref(),
            Some(r#"{"challenge":12345}"#)
        );
        assert_eq!(
            answer(br#"{"content":{"challenge":123456789012345678901234567890}}"#).as_deref(),
            Some(r#"{"challenge":123456789012345678901234567890}"#)
        );
        assert_eq!(
            answer(br#"{"content":{"challenge":1.50}}"#).as_deref(),
            Some(r#"{"challenge":1.50}"#)
        );
        assert_eq!(
            answer(br#"{"content":"{\"challenge\":7}"}"#).as_deref(),
            Some(r#"{"challenge":7}"#)
        );
        assert_eq!(answer(br#"{"content":{}}"#), None);
        assert_eq!(answer(br#"{"event":"verify_webhook"}"#), None);
    }
}

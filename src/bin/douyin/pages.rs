//! Douyin's pages: an answer's `cursor` and `has_more` (under `data`, or at the top), and the
//! next request carrying that `cursor` (in the query, or in the JSON body).

use serde_json::Value;

/// One page's request: its path and query, its JSON body, and the cursor it sent.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Page {
    pub(crate) path: String,
    pub(crate) body: Option<String>,
    cursor: Option<Value>,
    /// Whether the cursor goes into the JSON body (any method but GET, HEAD and DELETE).
    in_body: bool,
}

impl Page {
    /// The first page: the request as given.
    pub(crate) fn first(path: &str, body: Option<&str>, method: &http::Method) -> Self {
        let in_body = !matches!(
            *method,
            http::Method::GET | http::Method::HEAD | http::Method::DELETE
        );
        Self {
            path: path.to_owned(),
            body: body.map(str::to_owned),
            cursor: None,
            in_body,
        }
    }
}

/// The request for the page after `page`, given its answer: `None` when `has_more` is false
/// or absent; an error when the answer says there is more but gives no cursor, or the same
/// cursor again (which would loop for ever).
pub(crate) fn next_page(page: &Page, answer: &Value) -> Result<Option<Page>, String> {
    let holder = if answer["data"].get("has_more").is_some() {
        &answer["data"]
    } else {
        answer
    };
    if !has_more(&holder["has_more"]) {
        return Ok(None);
    }
    let cursor = match &holder["cursor"] {
        c @ (Value::Number(_) | Value::String(_)) => c.clone(),
        _ => return Err("the answer says has_more but gives no cursor; stopping".into()),
    };
    if page.cursor.as_ref() == Some(&cursor) {
        return Err(format!("the cursor did not advance ({cursor}); stopping"));
    }
    let mut next = page.clone();
    if page.in_body {
        let mut body: Value = match &page.body {
            Some(b) => serde_json::from_str(b).map_err(|e| format!("--data: {e}"))?,
            None => Value::Object(serde_json::Map::new()),
        };
        let Some(object) = body.as_object_mut() else {
            return Err("--paginate needs --data to be a JSON object to put the cursor in".into());
        };
        object.insert("cursor".into(), cursor.clone());
        next.body = Some(body.to_string());
    } else {
        next.path = with_query_cursor(&page.path, &cursor);
    }
    next.cursor = Some(cursor);
    Ok(Some(next))
}

/// `has_more` as Douyin sends it: a boolean, or 0/1, or their strings.
fn has_more(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_i64().is_some_and(|n| n != 0),
        Value::String(s) => matches!(s.trim(), "true" | "1"),
        _ => false,
    }
}

/// `path` with its `cursor` query parameter set to `cursor` (replacing one already there).
fn with_query_cursor(path: &str, cursor: &Value) -> String {
    let cursor = match cursor {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (base, query) = path.split_once('?').unwrap_or((path, ""));
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k != "cursor" {
            out.append_pair(&k, &v);
        }
    }
    out.append_pair("cursor", &cursor);
    format!("{base}?{}", out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_get_carries_the_cursor_in_its_query_until_has_more_is_false() {
        let first = Page::first(
            "/video/list/?open_id=o1&cursor=0&count=2",
            None,
            &http::Method::GET,
        );
        let next = next_page(&first, &json!({"data": {"cursor": 7, "has_more": true}}))
            .unwrap()
            .unwrap();
        assert_eq!(next.path, "/video/list/?open_id=o1&count=2&cursor=7");
        assert_eq!(next.body, None);
        let last = next_page(&next, &json!({"data": {"cursor": 9, "has_more": false}})).unwrap();
        assert_eq!(last, None);
    }

    #[test]
    fn a_post_carries_the_cursor_in_its_json_body() {
        let first = Page::first("/list/", Some(r#"{"count": 2}"#), &http::Method::POST);
        let next = next_page(&first, &json!({"cursor": "abc", "has_more": 1}))
            .unwrap()
            .unwrap();
        let body: Value = serde_json::from_str(next.body.as_deref().unwrap()).unwrap();
        assert_eq!(body, json!({"count": 2, "cursor": "abc"}));
        assert_eq!(next.path, "/list/");
    }

    #[test]
    fn a_missing_or_repeated_cursor_stops_with_an_error() {
        let first = Page::first("/list/", None, &http::Method::GET);
        assert!(next_page(&first, &json!({"data": {"has_more": true}})).is_err());
        let next = next_page(&first, &json!({"data": {"cursor": 3, "has_more": true}}))
            .unwrap()
            .unwrap();
        let again = next_page(&next, &json!({"data": {"cursor": 3, "has_more": true}}));
        assert!(again.unwrap_err().contains("did not advance"));
        assert_eq!(next_page(&first, &json!({"data": {"list": []}})), Ok(None));
    }
}

//! What the capture script in the page reports through its binding, and how a payload is
//! read (whatever the page sends: it is untrusted input).

use serde::Deserialize;

/// What the script reported.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum PageEvent {
    Hello {
        href: String,
        at: i64,
    },
    Bye {
        at: i64,
    },
    Beat {
        at: i64,
    },
    Chat {
        id: String,
        author: String,
        text: String,
        /// The page's clock (ms since the epoch) when the item was seen.
        at: i64,
    },
    Rect {
        x: i32,
        y: i32,
        w: u32,
        h: u32,
        found: bool,
        at: i64,
    },
}

/// A binding payload: the script's JSON as it sent it, or wrapped by headless_chrome's
/// `expose_function` shim (`{"name", "seq", "args": [JSON]}`).
pub fn parse_payload(text: &str) -> Option<PageEvent> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let inner = match v.get("args").and_then(|a| a.get(0)).and_then(|a| a.as_str()) {
        Some(arg) => serde_json::from_str(arg).ok()?,
        None => v,
    };
    serde_json::from_value(inner).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_are_read_plain_or_wrapped_and_garbage_is_dropped() {
        let plain = r#"{"type":"chat","id":"7","author":"Анна","text":"<img src=x>","at":5}"#;
        let want = PageEvent::Chat { id: "7".into(), author: "Анна".into(), text: "<img src=x>".into(), at: 5 };
        assert_eq!(parse_payload(plain), Some(want.clone()));
        let wrapped = serde_json::json!({"name": "__binding", "seq": 1, "args": [plain]}).to_string();
        assert_eq!(parse_payload(&wrapped), Some(want));
        for bad in ["", "{", r#"{"type":"chat"}"#, r#"{"type":"nope","at":1}"#, "[1,2]"] {
            assert_eq!(parse_payload(bad), None, "{bad}");
        }
    }
}

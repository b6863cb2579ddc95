//! Checks real responses against `assets/openapi.json`, so the document and the server
//! cannot drift apart: every JSON body the API tests receive goes through [`check`].
//!
//! The subset of OpenAPI 3.0 the document uses: `$ref` to `#/components/schemas/…`,
//! `type`, `properties`, `required`, `items`, `enum`, `nullable`, `allOf`. An object schema with
//! `properties` is closed: a field it does not list is reported (an undocumented field).

use std::sync::OnceLock;

use serde_json::Value;

fn spec() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| serde_json::from_str(include_str!("../../assets/openapi.json")).expect("openapi.json is JSON"))
}

/// The operation documented for `method` and `path` (query removed): the template with the
/// most literal segments among those that match.
fn operation(method: &str, path: &str) -> Option<(&'static str, &'static Value)> {
    let path = path.split('?').next().unwrap_or(path);
    let segs: Vec<&str> = path.split('/').collect();
    let paths = spec()["paths"].as_object()?;
    let mut best: Option<(usize, &str, &Value)> = None;
    for (template, ops) in paths {
        let t: Vec<&str> = template.split('/').collect();
        if t.len() != segs.len() {
            continue;
        }
        let matches = t.iter().zip(&segs).all(|(a, b)| (a.starts_with('{') && a.ends_with('}')) || a == b);
        if !matches {
            continue;
        }
        let literal = t.iter().filter(|a| !a.starts_with('{')).count();
        if let Some(op) = ops.get(method.to_ascii_lowercase())
            && best.is_none_or(|(l, _, _)| literal > l)
        {
            best = Some((literal, template.as_str(), op));
        }
    }
    best.map(|(_, t, op)| (t, op))
}

/// What is wrong with a response (empty when it follows the document). Paths outside
/// `/api/` that the document does not list (pages, scripts) are not checked.
pub fn check(method: &str, path: &str, status: u16, content_type: &str, body: &str) -> Vec<String> {
    let what = format!("{method} {path} → {status}");
    let Some((template, op)) = operation(method, path) else {
        return if path.starts_with("/api/") {
            vec![format!("{what}: the operation is not documented")]
        } else {
            vec![]
        };
    };
    let Some(response) = op["responses"].get(status.to_string()).or_else(|| op["responses"].get("default")) else {
        return vec![format!("{what}: status {status} is not documented for {method} {template}")];
    };
    let base = content_type.split(';').next().unwrap_or("").trim();
    if base != "application/json" && response["content"].get(base).is_some() {
        return vec![]; // a documented non-JSON answer (a file)
    }
    let schema = &response["content"]["application/json"]["schema"];
    let is_json = content_type.starts_with("application/json");
    match (schema.is_null(), is_json) {
        (true, false) => vec![],
        (true, true) => vec![format!("{what}: a JSON body where {method} {template} documents none")],
        (false, false) => vec![format!("{what}: {content_type:?}, not the documented JSON")],
        (false, true) => match serde_json::from_str::<Value>(body) {
            Ok(v) => validate(schema, &v, &what),
            Err(e) => vec![format!("{what}: the body is not JSON: {e}")],
        },
    }
}

/// Problems of `value` against the schema named `name` in the components (for bodies that
/// arrive outside a plain response, such as server-sent events).
pub fn check_schema(name: &str, value: &Value, at: &str) -> Vec<String> {
    let schema = serde_json::json!({ "$ref": format!("#/components/schemas/{name}") });
    validate(&schema, value, at)
}

fn validate(schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    walk(schema, value, at, &mut out);
    out
}

fn resolve(schema: &Value) -> &Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            &spec()["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn walk(schema: &Value, value: &Value, at: &str, out: &mut Vec<String>) {
    let schema = resolve(schema);
    if value.is_null() {
        if schema.get("nullable") != Some(&Value::Bool(true)) && schema.get("type").is_some() {
            out.push(format!("{at}: null where the document does not allow it"));
        }
        return;
    }
    let ok = match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        Some(other) => {
            out.push(format!("{at}: unknown type {other:?} in the document"));
            true
        }
    };
    if !ok {
        out.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    for part in schema.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        walk(part, value, at, out);
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        out.push(format!("{at}: {value} is not one of {}", Value::Array(allowed.clone())));
    }
    if let (Some(items), Some(list)) = (schema.get("items"), value.as_array()) {
        for (i, v) in list.iter().enumerate() {
            walk(items, v, &format!("{at}[{i}]"), out);
        }
    }
    if let (Some(props), Some(obj)) = (schema.get("properties").and_then(Value::as_object), value.as_object()) {
        for (k, v) in obj {
            match props.get(k) {
                Some(p) => walk(p, v, &format!("{at}.{k}"), out),
                None => out.push(format!("{at}.{k}: an undocumented field")),
            }
        }
        for r in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(name) = r.as_str()
                && !obj.contains_key(name)
            {
                out.push(format!("{at}.{name}: required by the document, missing"));
            }
        }
    }
}

#[test]
fn the_checker_reports_drift_both_ways() {
    let good = r#"{"error":{"code":"not_found","message":"no such stream","field":null,"platform_reason":null}}"#;
    assert!(check("GET", "/api/streams/7", 404, "application/json", good).is_empty());
    let extra = r#"{"error":{"code":"x","message":"y","field":null,"platform_reason":null,"hint":"z"}}"#;
    assert!(check("GET", "/api/streams/7", 404, "application/json", extra)[0].contains("hint: an undocumented field"));
    let wrong_type = r#"{"error":{"code":3,"message":"y","field":null,"platform_reason":null}}"#;
    assert!(!check("GET", "/api/streams/7", 404, "application/json", wrong_type).is_empty());
    assert!(!check("GET", "/api/streams/7", 599, "application/json", good).is_empty(), "undocumented status");
    assert!(!check("GET", "/api/nowhere", 200, "application/json", "{}").is_empty(), "undocumented operation");
    assert!(check("GET", "/js/main.js", 200, "text/javascript", "").is_empty(), "pages are not API");
}

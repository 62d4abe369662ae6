//! v1 requests read as Unkey's zod schemas read them: a field at a time in the schema's order, failing with
//! the first problem as `<path>: <zod's message>` (`externalId: String must contain at least 3
//! character(s)`). Bodies are counted before they are parsed, as v2's are (`json_shape.rs`).

use axum::body::Bytes;
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use crate::domain::identity::RatelimitInput;
use crate::json_shape;
use crate::routes::v1::V1Error;

/// Ratelimits one v1 request may set: v2's bound. (Unkey's v1 had none, and a request could make an
/// identity, and every list page holding it, as large as the body limit.)
const MAX_RATELIMITS: usize = 50;

/// A request's fields: a JSON body's, or a query string's.
pub struct Fields(Map<String, Value>);

impl Fields {
    /// A JSON body. Without a JSON `Content-Type` the body is not read and every field is absent, as hono's
    /// validator did.
    pub fn of_body(headers: &HeaderMap, body: &Bytes) -> Result<Self, V1Error> {
        let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
        if !is_json_media_type(content_type) {
            return Ok(Self(Map::new()));
        }
        if json_shape::may_hold_too_many_values(body) && json_shape::check(body, json_shape::MAX_VALUES).is_err() {
            return Err(V1Error::bad_request(format!(
                "the request body is not JSON or holds more than {} values",
                json_shape::MAX_VALUES
            )));
        }
        match serde_json::from_slice(body) {
            Ok(Value::Object(fields)) => Ok(Self(fields)),
            Ok(other) => Err(V1Error::bad_request(format!(": Expected object, received {}", kind(&other)))),
            Err(_) => Err(V1Error::bad_request("Malformed JSON in request body")),
        }
    }

    /// A query string; a key given twice is an array, which no field accepts.
    pub fn of_query(query: Option<&str>) -> Self {
        let mut fields = Map::new();
        for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            let value = Value::String(value.into_owned());
            match fields.get_mut(name.as_ref()) {
                Some(Value::Array(values)) => values.push(value),
                Some(first) => *first = Value::Array(vec![first.take(), value]),
                None => {
                    fields.insert(name.into_owned(), value);
                }
            }
        }
        Self(fields)
    }

    pub fn string(&self, name: &str, min_chars: usize) -> Result<Option<String>, V1Error> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(text)) if text.encode_utf16().count() < min_chars => {
                Err(issue(name, format!("String must contain at least {min_chars} character(s)")))
            }
            // No stored text holds a NUL, and PostgreSQL's cannot.
            Some(Value::String(text)) if text.contains('\0') => Err(issue(name, "String must not contain NUL")),
            Some(Value::String(text)) => Ok(Some(text.clone())),
            Some(other) => Err(expected(name, "string", other)),
        }
    }

    pub fn required_string(&self, name: &str, min_chars: usize) -> Result<String, V1Error> {
        self.string(name, min_chars)?.ok_or_else(|| issue(name, "Required"))
    }

    pub fn object(&self, name: &str) -> Result<Option<Map<String, Value>>, V1Error> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::Object(object)) => Ok(Some(object.clone())),
            Some(other) => Err(expected(name, "object", other)),
        }
    }

    /// Like [`string`](Self::string), at most `max_chars` long.
    pub fn bounded_string(&self, name: &str, min_chars: usize, max_chars: usize) -> Result<Option<String>, V1Error> {
        match self.string(name, min_chars)? {
            Some(text) if text.encode_utf16().count() > max_chars => {
                Err(issue(name, format!("String must contain at most {max_chars} character(s)")))
            }
            text => Ok(text),
        }
    }

    /// At most [`MAX_RATELIMITS`] `{name, limit ≥ 1, duration ≥ 1000}` items, as v1 sends them: never
    /// auto-applied.
    pub fn ratelimits(&self, name: &str) -> Result<Option<Vec<RatelimitInput>>, V1Error> {
        let items = match self.0.get(name) {
            None => return Ok(None),
            Some(Value::Array(items)) if items.len() > MAX_RATELIMITS => {
                return Err(issue(name, format!("Array must contain at most {MAX_RATELIMITS} element(s)")));
            }
            Some(Value::Array(items)) => items,
            Some(other) => return Err(expected(name, "array", other)),
        };
        items
            .iter()
            .enumerate()
            .map(|(index, item)| {
                let path = format!("{name}.{index}");
                let Value::Object(fields) = item else { return Err(expected(&path, "object", item)) };
                let fields = Self(fields.clone());
                let name = fields.required_string_at(&path, "name")?;
                let limit = fields.integer_at(&path, "limit", 1)?;
                let duration = fields.integer_at(&path, "duration", 1000)?;
                Ok(RatelimitInput { id: None, name, limit, duration, auto_apply: false })
            })
            .collect::<Result<_, _>>()
            .map(Some)
    }

    /// `limit`, read as `z.coerce.number().int().min(1).max(100)` reads a query value; `default` when absent.
    pub fn page_limit(&self, name: &str, default: i64) -> Result<i64, V1Error> {
        let Some(value) = self.0.get(name) else { return Ok(default) };
        let number = match value {
            Value::String(text) if text.trim().is_empty() => 0.0,
            Value::String(text) => text.trim().parse::<f64>().unwrap_or(f64::NAN),
            _ => f64::NAN,
        };
        if number.is_nan() {
            return Err(issue(name, "Expected number, received nan"));
        }
        if number.fract() != 0.0 {
            return Err(issue(name, "Expected integer, received float"));
        }
        if number < 1.0 {
            return Err(issue(name, "Number must be greater than or equal to 1"));
        }
        if number > 100.0 {
            return Err(issue(name, "Number must be less than or equal to 100"));
        }
        // Between 1 and 100, checked above.
        Ok(number as i64)
    }

    fn required_string_at(&self, path: &str, name: &str) -> Result<String, V1Error> {
        let at = format!("{path}.{name}");
        match self.0.get(name) {
            None => Err(issue(&at, "Required")),
            Some(Value::String(text)) => Ok(text.clone()),
            Some(other) => Err(expected(&at, "string", other)),
        }
    }

    fn integer_at(&self, path: &str, name: &str, min: i64) -> Result<i64, V1Error> {
        let at = format!("{path}.{name}");
        match self.0.get(name) {
            None => Err(issue(&at, "Required")),
            Some(Value::Number(number)) => {
                // JSON numbers are JavaScript's: 1000.0 and 1e3 are the integer 1000.
                let float = number.as_f64().unwrap_or(f64::NAN);
                if float.fract() != 0.0 {
                    return Err(issue(&at, "Expected integer, received float"));
                }
                match number.as_i64().or_else(|| (float.abs() < 9.2e18).then_some(float as i64)) {
                    Some(integer) if integer >= min => Ok(integer),
                    Some(_) => Err(issue(&at, format!("Number must be greater than or equal to {min}"))),
                    None => Err(issue(&at, format!("Number must be less than or equal to {}", i64::MAX))),
                }
            }
            Some(other) => Err(expected(&at, "number", other)),
        }
    }
}

/// hono's test for a JSON body: `application/json`, or `application/<something>+json`, with parameters.
fn is_json_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    media_type.strip_prefix("application/").is_some_and(|subtype| subtype == "json" || subtype.ends_with("+json"))
}

fn issue(path: &str, message: impl AsRef<str>) -> V1Error {
    V1Error::bad_request(format!("{path}: {}", message.as_ref()))
}

fn expected(path: &str, wanted: &str, got: &Value) -> V1Error {
    issue(path, format!("Expected {wanted}, received {}", kind(got)))
}

/// A value's type as zod names it.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

//! Lines logged while a request runs name it: its id, method and path, read from the task-local the
//! middleware sets (`envelope::REQUEST`) only when a line is written. In the JSON log they are the line's
//! `span` object, in the shape tracing-subscriber gives a span; in the text log they end the line. A tracing
//! span per request did this before, and cost every request about 4,000 instructions, 7% of a cached read
//! (callgrind), whether or not a line was ever logged inside it.

use std::fmt;

use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::envelope::{REQUEST, RequestTag};

/// Formats a line as `inner` does, then names the request it was logged in, if any.
pub struct InRequest<F> {
    inner: F,
    json: bool,
}

impl<F> InRequest<F> {
    /// Around tracing-subscriber's JSON format, set to write no span of its own.
    pub fn json(inner: F) -> Self {
        Self { inner, json: true }
    }

    pub fn text(inner: F) -> Self {
        Self { inner, json: false }
    }
}

impl<S, N, F> FormatEvent<S, N> for InRequest<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, context: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let Ok(tag) = REQUEST.try_with(|request| request_fields(request, self.json)) else {
            return self.inner.format_event(context, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(context, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match (self.json, line.strip_suffix('}')) {
            (true, Some(object)) => writeln!(writer, "{object},\"span\":{tag}}}"),
            // Not a JSON object after all: written as it came, rather than as invalid JSON.
            (true, None) => writeln!(writer, "{line}"),
            (false, _) => writeln!(writer, "{line} {tag}"),
        }
    }
}

/// The request's fields as the JSON line's `span` object, or as the text line's last fields.
fn request_fields(request: &RequestTag, json: bool) -> String {
    if !json {
        return format!("request_id={:?} method={:?} path={:?}", request.id, request.method.as_str(), request.path);
    }
    let mut object = Vec::with_capacity(128);
    for (name, value) in
        [("request_id", request.id.as_str()), ("method", request.method.as_str()), ("path", &request.path)]
    {
        object.push(if object.is_empty() { b'{' } else { b',' });
        push_json_string(&mut object, name);
        object.push(b':');
        push_json_string(&mut object, value);
    }
    object.extend_from_slice(br#","name":"request"}"#);
    String::from_utf8(object).expect("JSON written from strings is UTF-8")
}

/// `value` as a JSON string, as serde_json writes it: copied whole when nothing in it needs escaping, else
/// escaped by serde_json.
pub fn push_json_string(out: &mut Vec<u8>, value: &str) {
    if needs_escaping(value.as_bytes()) {
        let _ = serde_json::to_writer(&mut *out, value);
    } else {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    }
}

/// Whether any byte of `text` is one JSON escapes: a control character, a quote or a backslash. Eight bytes
/// at a time (the bit tricks are "hasless" and "haszero" from Bit Twiddling Hacks, exact as a yes or no):
/// a byte at a time it took 228 instructions per string of the log line (callgrind), more than serde_json's
/// escaping it replaces.
fn needs_escaping(text: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    let any_below = |word: u64, bound: u8| word.wrapping_sub(ONES * u64::from(bound)) & !word & HIGHS != 0;
    let any_equal = |word: u64, byte: u8| any_below(word ^ (ONES * u64::from(byte)), 1);
    let escapes = |word: u64| any_below(word, 0x20) | any_equal(word, b'"') | any_equal(word, b'\\');
    let mut words = text.chunks_exact(8);
    for word in &mut words {
        if escapes(u64::from_ne_bytes(word.try_into().expect("eight bytes"))) {
            return true;
        }
    }
    // The last few bytes as a word padded with spaces, which need no escaping.
    let rest = words.remainder();
    let mut last = [b' '; 8];
    last[..rest.len()].copy_from_slice(rest);
    escapes(u64::from_ne_bytes(last))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::http::Method;
    use serde_json::{Value, json};
    use tracing_subscriber::prelude::*;

    use super::*;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What `log` writes, in the JSON format or the text one, as the server sets them up.
    fn logged(json: bool, log: impl FnOnce()) -> String {
        let lines = Lines::default();
        let writer = lines.clone();
        let layer = tracing_subscriber::fmt::layer().with_writer(move || writer.clone());
        let layer = if json {
            layer
                .event_format(InRequest::json(
                    tracing_subscriber::fmt::format().json().with_current_span(false).with_span_list(false),
                ))
                .boxed()
        } else {
            layer.event_format(InRequest::text(tracing_subscriber::fmt::format().with_ansi(false))).boxed()
        };
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), log);
        String::from_utf8(lines.0.lock().unwrap().clone()).expect("UTF-8")
    }

    fn in_a_request(log: impl FnOnce()) {
        let tag = RequestTag { id: "req_1".to_owned(), method: Method::POST, path: "/v2/\"quoted\"\n".to_owned() };
        REQUEST.sync_scope(tag, log);
    }

    #[test]
    fn a_json_line_inside_a_request_names_it_as_its_span() {
        // Inside a dependency's span too, which the line leaves out.
        let line = logged(true, || {
            in_a_request(|| tracing::info_span!("dependency", n = 2).in_scope(|| tracing::warn!(n = 1, "inside")))
        });
        assert_eq!(line.lines().count(), 1, "{line}");
        assert_eq!(line.matches(r#""span""#).count(), 1, "{line}");
        let line: Value = serde_json::from_str(&line).expect("one JSON line");
        assert_eq!(line["fields"], json!({"message": "inside", "n": 1}));
        assert_eq!(line["level"], "WARN");
        let expected = json!({"request_id": "req_1", "method": "POST", "path": "/v2/\"quoted\"\n", "name": "request"});
        assert_eq!(line["span"], expected);
    }

    #[test]
    fn a_json_line_outside_a_request_has_no_span() {
        let line = logged(true, || tracing::warn!(n = 1, "outside"));
        let line: Value = serde_json::from_str(&line).expect("one JSON line");
        assert_eq!(line["fields"], json!({"message": "outside", "n": 1}));
        assert!(line.get("span").is_none(), "{line}");
    }

    #[test]
    fn a_text_line_inside_a_request_ends_with_its_fields_escaped() {
        let line = logged(false, || in_a_request(|| tracing::warn!(n = 1, "inside")));
        assert!(
            line.ends_with("inside n=1 request_id=\"req_1\" method=\"POST\" path=\"/v2/\\\"quoted\\\"\\n\"\n"),
            "{line}"
        );
        assert_eq!(line.lines().count(), 1, "{line}");
        let outside = logged(false, || tracing::warn!(n = 1, "outside"));
        assert!(outside.ends_with("outside n=1\n") && !outside.contains("request_id"), "{outside}");
    }

    proptest::proptest! {
        #[test]
        fn needs_escaping_exactly_when_a_byte_is_a_control_a_quote_or_a_backslash(
            text in proptest::collection::vec(
                proptest::prop_oneof![
                    40 => 0x20_u8..=0xff,
                    1 => 0_u8..0x20,
                    // Each side of every bound the words are checked against.
                    4 => proptest::sample::select(vec![0x00, 0x01, 0x1f, 0x20, 0x21, 0x23, 0x5b, 0x5d, 0x7f, 0x80, 0xff]),
                    1 => proptest::strategy::Just(b'"'),
                    1 => proptest::strategy::Just(b'\\'),
                ],
                0..40,
            )
        ) {
            let byte_by_byte = text.iter().any(|&byte| byte < 0x20 || byte == b'"' || byte == b'\\');
            proptest::prop_assert_eq!(needs_escaping(&text), byte_by_byte);
        }

        #[test]
        fn a_string_is_written_as_serde_json_writes_it(text in "(\\PC|[\"\\\\\\x00-\\x1f])*") {
            let mut ours = Vec::new();
            push_json_string(&mut ours, &text);
            proptest::prop_assert_eq!(ours, serde_json::to_vec(&text).expect("serialize"));
        }
    }
}

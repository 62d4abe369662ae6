//! How the JSON log keeps a span's fields (the request's id, method and path) for the lines logged inside
//! it: one JSON object, written straight from the values when the span opens. tracing-subscriber's
//! `JsonFields` first gathers them into a map of `serde_json::Value`s, which took about 7,700 instructions,
//! a tenth of a cached read's (callgrind), on every request, whether or not a line is ever logged inside it.

use std::fmt::{self, Debug};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing::span::Record;
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, FormattedFields};

pub struct JsonSpanFields;

impl<'writer> FormatFields<'writer> for JsonSpanFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'writer>, fields: R) -> fmt::Result {
        writer.write_str(&object_of(fields)?)
    }

    /// A field recorded later joins the same object.
    fn add_fields(&self, current: &'writer mut FormattedFields<Self>, fields: &Record<'_>) -> fmt::Result {
        let added = object_of(fields)?;
        match (current.fields.strip_suffix('}'), added.strip_prefix('{')) {
            (Some(_), Some("}")) => {}
            (Some(before), Some(entries)) if before != "{" => {
                current.fields.truncate(before.len());
                current.fields.push(',');
                current.fields.push_str(entries);
            }
            _ => current.fields = added,
        }
        Ok(())
    }
}

fn object_of(fields: impl RecordFields) -> Result<String, fmt::Error> {
    // Room for a request's id, method and path: grown from empty, the buffer was copied five times.
    let mut object = JsonObject { bytes: Vec::with_capacity(128) };
    fields.record(&mut object);
    if object.bytes.is_empty() {
        object.bytes.push(b'{');
    }
    object.bytes.push(b'}');
    String::from_utf8(object.bytes).map_err(|_| fmt::Error)
}

/// `{"name":value,…` as the fields are visited; [`object_of`] closes it.
struct JsonObject {
    bytes: Vec<u8>,
}

impl JsonObject {
    fn name(&mut self, field: &Field) {
        self.bytes.push(if self.bytes.is_empty() { b'{' } else { b',' });
        push_json_string(&mut self.bytes, field.name());
        self.bytes.push(b':');
    }

    fn entry(&mut self, field: &Field, value: impl Serialize) {
        self.name(field);
        // Writing to a Vec fails only for a value serde_json cannot write, which none of these is.
        let _ = serde_json::to_writer(&mut self.bytes, &value);
    }
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

/// As `JsonFields` records them: numbers and booleans as themselves, anything else as its `Debug` text.
impl Visit for JsonObject {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        push_json_string(&mut self.bytes, value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, value);
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.entry(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.entry(field, format!("{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

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

    /// The `span` object of the JSON line that `log_inside` logs.
    fn span_of_a_line_inside(log_inside: impl FnOnce()) -> Value {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .json()
                .with_span_list(false)
                .fmt_fields(JsonSpanFields)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, log_inside);
        let line: Value = serde_json::from_slice(&lines.0.lock().unwrap()).expect("one JSON line");
        assert_eq!(line["fields"], json!({"message": "inside", "n": 1}));
        line["span"].clone()
    }

    #[test]
    fn a_line_inside_a_span_carries_its_fields_as_json_the_later_recorded_ones_too() {
        let span = span_of_a_line_inside(|| {
            let span = tracing::info_span!(
                "request",
                request_id = "req_1",
                path = "/v2/\"quoted\"\n",
                status = 200_u16,
                fine = true,
                error = ?Some("debug"),
                later = tracing::field::Empty,
            );
            let _entered = span.enter();
            span.record("later", -1_i64);
            tracing::warn!(n = 1, "inside");
        });
        let expected = json!({"name": "request", "request_id": "req_1", "path": "/v2/\"quoted\"\n", "status": 200,
                              "fine": true, "error": "Some(\"debug\")", "later": -1});
        assert_eq!(span, expected);
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

    #[test]
    fn a_span_without_fields_and_one_whose_only_field_came_later() {
        let bare = span_of_a_line_inside(|| {
            let _entered = tracing::info_span!("bare").entered();
            tracing::warn!(n = 1, "inside");
        });
        assert_eq!(bare, json!({"name": "bare"}));
        let later = span_of_a_line_inside(|| {
            let span = tracing::info_span!("later", only = tracing::field::Empty);
            span.record("only", "set");
            let _entered = span.enter();
            tracing::warn!(n = 1, "inside");
        });
        assert_eq!(later, json!({"name": "later", "only": "set"}));
    }
}

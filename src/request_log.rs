//! The line each request ends with ("handled"). With `--log-format json` it is written by hand straight
//! into the log thread's writer, in the shape tracing-subscriber gives every other line. Through
//! tracing-subscriber's JSON formatter it took about 22,000 instructions, a quarter of a cached read's
//! (callgrind), most of them in its adapter re-checking as UTF-8 each piece serde_json wrote; serialized
//! by serde_json it still took 5,600, two thirds of them escaping strings that need none (ids, the method)
//! through a write per quote. Other formats go through `tracing` as before.

use std::sync::OnceLock;

use crate::log_fields::push_json_string;
use crate::log_writer::LogWriter;

/// The target the line is logged under, as `SIGIL_LOG` names it.
const TARGET: &str = "sigil::middleware";

/// Room for a request's line with its caller and a conflict: about 400 bytes.
const LINE_BYTES: usize = 512;

static JSON_LINES: OnceLock<LogWriter> = OnceLock::new();

/// Makes every request's line a JSON line written to `writer` (the log thread's, so it keeps its place
/// among the other lines).
pub fn write_json_lines_to(writer: LogWriter) {
    let _ = JSON_LINES.set(writer);
}

/// What a request's line says. Absent values are left out, as `tracing` leaves out an empty field.
pub struct Handled<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_us: u64,
    pub error: Option<&'a str>,
    pub workspace: Option<&'a str>,
    pub root_key_id: Option<&'a str>,
    pub conflicting_field: Option<&'a str>,
    pub conflicting_value: Option<&'a str>,
    pub existing_identity_id: Option<&'a str>,
}

pub fn log(line: &Handled<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(writer) = JSON_LINES.get() else {
        return log_through_tracing(line);
    };
    writer.write_line(&json_line(&rfc3339_micros(time::OffsetDateTime::now_utc()), line));
}

/// The line as tracing-subscriber's JSON formatter writes an event: timestamp, level, the fields with the
/// message first, target; ended by a newline.
fn json_line(timestamp: &str, line: &Handled<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(LINE_BYTES);
    out.extend_from_slice(b"{\"timestamp\":\"");
    out.extend_from_slice(timestamp.as_bytes());
    out.extend_from_slice(b"\",\"level\":\"INFO\",\"fields\":{\"message\":\"handled\",\"request_id\":");
    push_json_string(&mut out, line.request_id);
    out.extend_from_slice(b",\"method\":");
    push_json_string(&mut out, line.method);
    out.extend_from_slice(b",\"path\":");
    push_json_string(&mut out, line.path);
    out.extend_from_slice(b",\"status\":");
    out.extend_from_slice(itoa::Buffer::new().format(line.status).as_bytes());
    out.extend_from_slice(b",\"latency_us\":");
    out.extend_from_slice(itoa::Buffer::new().format(line.latency_us).as_bytes());
    let optional = [
        (&b",\"error\":"[..], line.error),
        (b",\"workspace\":", line.workspace),
        (b",\"root_key_id\":", line.root_key_id),
        (b",\"conflicting_field\":", line.conflicting_field),
        (b",\"conflicting_value\":", line.conflicting_value),
        (b",\"existing_identity_id\":", line.existing_identity_id),
    ];
    for (name, value) in optional {
        if let Some(value) = value {
            out.extend_from_slice(name);
            push_json_string(&mut out, value);
        }
    }
    out.extend_from_slice(b"},\"target\":\"");
    out.extend_from_slice(TARGET.as_bytes());
    out.extend_from_slice(b"\"}\n");
    out
}

/// After the request's scope has ended, with its fields as the line's own, so that they are not written a
/// second time as the request's (`log_fields::InRequest`).
fn log_through_tracing(line: &Handled<'_>) {
    tracing::info!(
        target: TARGET,
        parent: None,
        request_id = line.request_id,
        method = line.method,
        path = line.path,
        status = line.status,
        latency_us = line.latency_us,
        error = line.error,
        workspace = line.workspace,
        root_key_id = line.root_key_id,
        conflicting_field = line.conflicting_field,
        conflicting_value = line.conflicting_value,
        existing_identity_id = line.existing_identity_id,
        "handled"
    );
}

/// `2026-12-03T03:53:40.097883Z`, as tracing-subscriber's `SystemTime` writes every other line's timestamp,
/// digit by digit: through `core::fmt`'s padding it took 2,400 instructions, 3% of a cached read.
fn rfc3339_micros(moment: time::OffsetDateTime) -> String {
    let mut text = String::with_capacity(27);
    let mut digits = |value: u32, width: u32, after: char| {
        for place in (0..width).rev() {
            text.push(char::from(b'0' + (value / 10_u32.pow(place) % 10) as u8));
        }
        text.push(after);
    };
    digits(moment.year().unsigned_abs(), 4, '-');
    digits(u32::from(u8::from(moment.month())), 2, '-');
    digits(u32::from(moment.day()), 2, 'T');
    digits(u32::from(moment.hour()), 2, ':');
    digits(u32::from(moment.minute()), 2, ':');
    digits(u32::from(moment.second()), 2, '.');
    digits(moment.microsecond(), 6, 'Z');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn handled<'a>(path: &'a str, conflicting_value: Option<&'a str>) -> Handled<'a> {
        Handled {
            request_id: "req_01M8XAQ4F1HY9MNTHHXVA29N29",
            method: "POST",
            path,
            status: 409,
            latency_us: 1234,
            error: Some("unkey/application/identity_already_exists"),
            workspace: Some("ws_01M8XAPSG8VM8703HHS0681M52"),
            root_key_id: None,
            conflicting_field: conflicting_value.map(|_| "externalId"),
            conflicting_value,
            existing_identity_id: conflicting_value.map(|_| "id_01M8XADBQ42C0SD64NJAM7Y88J"),
        }
    }

    #[test]
    fn a_line_is_the_json_tracing_writes_with_every_string_escaped_as_serde_json_does() {
        let hostile = "quote \" backslash \\ newline \n nul \u{0} del \u{7f} é 🦀";
        for (path, conflict) in [("/v2/identities.getIdentity", None), (hostile, Some(hostile))] {
            let line = json_line("2026-12-03T03:53:40.097883Z", &handled(path, conflict));
            let text = String::from_utf8(line).expect("UTF-8");
            assert!(text.ends_with('\n') && text.matches('\n').count() == 1, "{text}");
            let mut expected = serde_json::json!({
                "timestamp": "2026-12-03T03:53:40.097883Z",
                "level": "INFO",
                "fields": {
                    "message": "handled",
                    "request_id": "req_01M8XAQ4F1HY9MNTHHXVA29N29",
                    "method": "POST",
                    "path": path,
                    "status": 409,
                    "latency_us": 1234,
                    "error": "unkey/application/identity_already_exists",
                    "workspace": "ws_01M8XAPSG8VM8703HHS0681M52",
                },
                "target": "sigil::middleware",
            });
            if let Some(value) = conflict {
                let fields = expected["fields"].as_object_mut().expect("fields");
                fields.insert("conflicting_field".into(), "externalId".into());
                fields.insert("conflicting_value".into(), value.into());
                fields.insert("existing_identity_id".into(), "id_01M8XADBQ42C0SD64NJAM7Y88J".into());
            }
            // Byte for byte what serde_json writes (the crate keeps fields in order), so also valid JSON.
            assert_eq!(text.trim_end(), serde_json::to_string(&expected).expect("serialize"));
        }
    }

    #[test]
    fn timestamps_have_the_shape_of_every_other_lines() {
        let moments = [
            (0_i64, "1970-01-01T00:00:00.000000Z"),
            (1, "1970-01-01T00:00:00.000001Z"),
            (999_999, "1970-01-01T00:00:00.999999Z"),
            (1_764_732_820_097_883, "2025-12-03T03:33:40.097883Z"),
            (4_102_444_799_999_999, "2099-12-31T23:59:59.999999Z"),
        ];
        for (micros_since_epoch, expected) in moments {
            let moment =
                time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros_since_epoch) * 1000).expect("moment");
            assert_eq!(rfc3339_micros(moment), expected);
        }
        // tracing-subscriber's, for the shape: the same length, the same separators.
        let mut theirs = String::new();
        let _ = tracing_subscriber::fmt::time::FormatTime::format_time(
            &tracing_subscriber::fmt::time::SystemTime,
            &mut tracing_subscriber::fmt::format::Writer::new(&mut theirs),
        );
        let ours = rfc3339_micros(time::OffsetDateTime::now_utc());
        let separators = |text: &str| text.replace(|c: char| c.is_ascii_digit(), "0");
        assert_eq!(separators(&ours), separators(&theirs));
    }
}

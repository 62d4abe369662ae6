//! The line each request ends with ("handled"). With `--log-format json` it is serialized by serde_json
//! straight into the log thread's writer, in the shape tracing-subscriber gives every other line: through
//! tracing-subscriber's JSON formatter it took about 22,000 instructions, a quarter of a cached read's
//! (callgrind), most of them in its adapter re-checking as UTF-8 each piece serde_json wrote. Other formats
//! go through `tracing` as before.

use std::sync::OnceLock;

use serde::Serialize;

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
#[derive(Serialize)]
pub struct Handled<'a> {
    pub request_id: &'a str,
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub latency_us: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root_key_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicting_field: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conflicting_value: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub existing_identity_id: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonLine<'a> {
    timestamp: String,
    level: &'static str,
    fields: Fields<'a>,
    target: &'static str,
}

#[derive(Serialize)]
struct Fields<'a> {
    message: &'static str,
    #[serde(flatten)]
    handled: &'a Handled<'a>,
}

pub fn log(line: &Handled<'_>) {
    if !tracing::enabled!(target: TARGET, tracing::Level::INFO) {
        return;
    }
    let Some(writer) = JSON_LINES.get() else {
        return log_through_tracing(line);
    };
    let timestamp = rfc3339_micros(time::OffsetDateTime::now_utc());
    let json_line =
        JsonLine { timestamp, level: "INFO", fields: Fields { message: "handled", handled: line }, target: TARGET };
    // Sized for a whole line: grown from serde_json's 128 bytes it was copied twice on the way.
    let mut bytes = Vec::with_capacity(LINE_BYTES);
    if serde_json::to_writer(&mut bytes, &json_line).is_err() {
        return;
    }
    bytes.push(b'\n');
    writer.write_line(&bytes);
}

/// Outside the request's span, with its fields as the line's own: tracing-subscriber's formatters write a
/// span's stored fields again for every line inside it.
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

//! The line each request ends with ("handled"). With `--log-format json` it is serialized by serde_json
//! straight into the log thread's writer, in the shape tracing-subscriber gives every other line: through
//! tracing-subscriber's JSON formatter it took about 22,000 instructions, a quarter of a cached read's
//! (callgrind), most of them in its adapter re-checking as UTF-8 each piece serde_json wrote. Other formats
//! go through `tracing` as before.

use std::io::Write;
use std::sync::OnceLock;

use serde::Serialize;
use tracing_appender::non_blocking::NonBlocking;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};

/// The target the line is logged under, as `SIGIL_LOG` names it.
const TARGET: &str = "sigil::middleware";

static JSON_LINES: OnceLock<NonBlocking> = OnceLock::new();

/// Makes every request's line a JSON line written to `writer` (the log thread's, so it keeps its place
/// among the other lines).
pub fn write_json_lines_to(writer: NonBlocking) {
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
    let mut timestamp = String::with_capacity(32);
    let _ = SystemTime.format_time(&mut Writer::new(&mut timestamp));
    let json_line =
        JsonLine { timestamp, level: "INFO", fields: Fields { message: "handled", handled: line }, target: TARGET };
    let Ok(mut bytes) = serde_json::to_vec(&json_line) else { return };
    bytes.push(b'\n');
    // One write is one line for the log thread.
    let _ = writer.clone().write_all(&bytes);
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

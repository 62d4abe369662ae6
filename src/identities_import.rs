//! `sigil identities import`: identities from a JSON Lines file (export's format, or any lines shaped as
//! createIdentity's body, with optional `id`s to keep) into a workspace, through the store, so that the
//! database's uniqueness decides as it does for the API. A bad line never stops it: each line is reported
//! as created, already existing (with the holder's id), updated or invalid (with the reason), then a
//! summary. A re-run creates nothing new. Lines run 64 at a time, so SQLite's group commit fills.

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::sync::Arc;

use anyhow::Context;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ImportArgs, OnConflict};
use crate::domain::identity::{
    Creation, IdentityChanges, Meta, NewIdentity, RatelimitInput, check_meta_and_ratelimits,
};
use crate::domain::workspace::WorkspaceId;
use crate::store::{Recorded, Store, StoreError};

/// Lines in flight at once: enough for SQLite's group commit to put many rows behind each fsync.
const IN_FLIGHT: usize = 64;

#[derive(Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct LineReport {
    pub line: usize,
    pub outcome: Outcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The identity created or updated, or the one that already holds the externalId.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl LineReport {
    fn invalid(line: usize, reason: String) -> Self {
        Self { line, outcome: Outcome::Invalid, external_id: None, id: None, reason: Some(reason) }
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Created,
    AlreadyExists,
    Updated,
    Invalid,
}

/// A line as createIdentity's body takes it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    external_id: String,
    #[serde(default)]
    meta: Meta,
    #[serde(default)]
    ratelimits: Vec<RatelimitInput>,
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let store = crate::store::open(&args.database.url).await?;
    let (workspace, _) = store.ensure_workspace(&args.workspace).await?;
    let lines = std::fs::File::open(&args.file).with_context(|| format!("opening {}", args.file.display()))?;
    // Only a regular file can be read twice: counting a pipe's lines first would leave none to import.
    let total = match lines.metadata()?.is_file() {
        true => Some(BufReader::new(std::fs::File::open(&args.file)?).split(b'\n').count()),
        false => None,
    };
    let progress = if std::io::stderr().is_terminal() {
        total.map_or_else(ProgressBar::no_length, |total| ProgressBar::new(total as u64)).with_style(
            ProgressStyle::with_template("{bar:40} {pos}/{len} lines, {per_sec}, {eta} left")
                .expect("a valid template"),
        )
    } else {
        ProgressBar::hidden()
    };
    let mut report_file = args.report.as_ref().map(std::fs::File::create).transpose()?.map(std::io::BufWriter::new);
    let in_flight = if args.on_conflict == OnConflict::Fail { 1 } else { IN_FLIGHT };
    let store = Arc::clone(&store);
    let mut reports = futures::stream::iter(BufReader::new(lines).split(b'\n').enumerate())
        .map(|(index, bytes)| {
            let (store, workspace) = (Arc::clone(&store), workspace.clone());
            async move {
                let mut bytes = bytes.with_context(|| format!("reading line {}", index + 1))?;
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                // A line that is not UTF-8 is a bad line like any other, not the end of the import.
                let Ok(text) = String::from_utf8(bytes) else {
                    return Ok(LineReport::invalid(index + 1, "not UTF-8".to_owned()));
                };
                import_line(&*store, &workspace, index + 1, &text, args.on_conflict).await
            }
        })
        .buffered(in_flight);
    let mut counts = [0_usize; 4];
    let mut stopped_at = None;
    let mut stdout = std::io::stdout().lock();
    while let Some(report) = reports.next().await {
        let report = report?;
        counts[report.outcome as usize] += 1;
        progress.suspend(|| writeln!(stdout, "{}", describe(&report)))?;
        progress.inc(1);
        if let Some(file) = report_file.as_mut() {
            serde_json::to_writer(&mut *file, &report)?;
            file.write_all(b"\n")?;
        }
        if args.on_conflict == OnConflict::Fail && report.outcome == Outcome::AlreadyExists {
            stopped_at = Some(report.line);
            break;
        }
    }
    drop(reports);
    progress.finish_and_clear();
    if let Some(mut file) = report_file {
        file.flush()?;
    }
    store.close().await;
    let [created, already_exists, updated, invalid] = counts;
    let total = total.unwrap_or(counts.iter().sum());
    eprintln!(
        "{created} created, {already_exists} already existing, {updated} updated, {invalid} invalid, of {total} lines"
    );
    if let Some(line) = stopped_at {
        anyhow::bail!("stopped at line {line}: its externalId is taken (--on-conflict fail)");
    }
    anyhow::ensure!(invalid == 0, "{invalid} invalid lines were left out");
    Ok(())
}

fn describe(report: &LineReport) -> String {
    let name = report.external_id.as_deref().unwrap_or("");
    match report.outcome {
        Outcome::Created => format!("line {}: created {name} as {}", report.line, report.id.as_deref().unwrap_or("")),
        Outcome::AlreadyExists => {
            format!("line {}: {name} already exists as {}", report.line, report.id.as_deref().unwrap_or(""))
        }
        Outcome::Updated => format!("line {}: updated {name} ({})", report.line, report.id.as_deref().unwrap_or("")),
        Outcome::Invalid => format!("line {}: invalid: {}", report.line, report.reason.as_deref().unwrap_or("")),
    }
}

/// One line's outcome. Only a failing database is an error: every fault of the line is an outcome.
pub async fn import_line(
    store: &dyn Store,
    workspace: &WorkspaceId,
    line: usize,
    text: &str,
    on_conflict: OnConflict,
) -> anyhow::Result<LineReport> {
    let report = |outcome, external_id: Option<&str>, id: Option<&str>, reason: Option<String>| LineReport {
        line,
        outcome,
        external_id: external_id.map(str::to_owned),
        id: id.map(str::to_owned),
        reason,
    };
    let new = match parse(text) {
        Ok(new) => new,
        Err(reason) => return Ok(LineReport::invalid(line, reason)),
    };
    let external_id = Some(new.external_id.as_str());
    if let Some(id) = &new.id
        && let Some(holder) = store.get_identity(workspace, id).await?.filter(|holder| holder.id == *id)
        && holder.external_id != new.external_id
    {
        let reason = format!("its id {id} is the identity {:?}'s", holder.external_id);
        return Ok(report(Outcome::Invalid, external_id, None, Some(reason)));
    }
    let existing_id = match store.create_identity(workspace, &new, None).await {
        Ok(Recorded::Ran(Creation::Created { id })) => {
            return Ok(report(Outcome::Created, external_id, Some(&id), None));
        }
        Ok(Recorded::Ran(Creation::AlreadyExists { existing_id })) => existing_id,
        Ok(Recorded::Answered(_)) => anyhow::bail!("a create without an Idempotency-Key was answered by a record"),
        // A kept id taken meanwhile, by a line with another externalId.
        Err(StoreError::Contended(_)) if new.id.is_some() => {
            let reason = "its id was taken by another line of the file".to_owned();
            return Ok(report(Outcome::Invalid, external_id, None, Some(reason)));
        }
        Err(error) => return Err(error.into()),
    };
    if on_conflict != OnConflict::Update {
        return Ok(report(Outcome::AlreadyExists, external_id, Some(&existing_id), None));
    }
    let changes = IdentityChanges { meta: Some(new.meta), ratelimits: Some(new.ratelimits), external_id: None };
    store.update_identity(workspace, &existing_id, &changes, None).await?;
    Ok(report(Outcome::Updated, external_id, Some(&existing_id), None))
}

/// A line checked as createIdentity checks its body, after its ids (an export's) are set aside.
fn parse(text: &str) -> Result<NewIdentity, String> {
    let mut value: Value = serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let object = value.as_object_mut().ok_or("not a JSON object")?;
    let id = match object.remove("id") {
        None => None,
        Some(Value::String(id)) if is_id(&id) => Some(id),
        Some(_) => return Err("`id` must be an id such as id_01J…".to_owned()),
    };
    let mut ratelimit_ids = Vec::new();
    if let Some(Value::Array(ratelimits)) = object.get_mut("ratelimits") {
        for ratelimit in ratelimits.iter_mut() {
            let kept = ratelimit.as_object_mut().and_then(|limit| limit.remove("id"));
            ratelimit_ids.push(kept.and_then(|id| id.as_str().filter(|id| is_id(id)).map(str::to_owned)));
        }
    }
    crate::openapi::validate_request_body("/v2/identities.createIdentity", &value).map_err(|error| {
        let first = error.errors.first().map(|problem| format!(" ({} {})", problem.location, problem.message));
        format!("{}{}", error.detail, first.unwrap_or_default())
    })?;
    let line: Line = serde_json::from_value(value).map_err(|error| error.to_string())?;
    check_meta_and_ratelimits(Some(&line.meta), Some(&line.ratelimits)).map_err(|problem| problem.message)?;
    let ratelimits = line
        .ratelimits
        .into_iter()
        .zip(ratelimit_ids.into_iter().chain(std::iter::repeat(None)))
        .map(|(limit, id)| RatelimitInput { id, ..limit })
        .collect();
    Ok(NewIdentity { id, external_id: line.external_id, meta: line.meta, ratelimits })
}

fn is_id(text: &str) -> bool {
    (1..=255).contains(&text.len()) && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

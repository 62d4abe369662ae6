//! Identities and their ratelimits: the stored shape, the wire shape, and the rules a request's JSON
//! schema cannot express (total meta size, unique ratelimit names).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::domain::ids::new_id;
use crate::error::ValidationError;

pub type Meta = Map<String, Value>;

/// Serialized meta may be at most 1 MiB, as in Unkey.
pub const MAX_META_BYTES: usize = 1024 * 1024;

/// An identity as every read returns it. Empty meta and an empty ratelimit list are omitted, as Unkey does.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    pub id: String,
    pub external_id: String,
    /// A JSON object.
    #[serde(skip_serializing_if = "is_empty")]
    pub meta: StoredJson,
    /// A JSON array of [`Ratelimit`]s, sorted by name, so the order is stable across reads and backends.
    #[serde(skip_serializing_if = "is_empty")]
    pub ratelimits: StoredJson,
}

impl Identity {
    /// The identity as a key that may not read it sees it: its id and externalId, its meta and ratelimits
    /// left out as empty ones are.
    pub fn names_only(&self) -> Self {
        let empty = |text: &str| RawValue::from_string(text.to_owned()).expect("literal JSON");
        Self { id: self.id.clone(), external_id: self.external_id.clone(), meta: empty("{}"), ratelimits: empty("[]") }
    }
}

/// Identities are equal when they read the same: meta and ratelimits compare as stored text.
impl PartialEq for Identity {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.external_id == other.external_id
            && self.meta.get() == other.meta.get()
            && self.ratelimits.get() == other.ratelimits.get()
    }
}

/// JSON as stored, checked once when read and passed on to the wire as it is. Reads never look inside an
/// identity's meta or ratelimits, and parsing them only to write them out again was about a fifth of the
/// server's work on a list page (meta a tenth, ratelimits almost as much for one ratelimit per identity).
pub type StoredJson = Box<RawValue>;

/// `None` unless `text` is JSON opening with `opening`: `{` for meta, `[` for ratelimits.
pub fn stored_json(text: String, opening: char) -> Option<StoredJson> {
    let json = RawValue::from_string(text).ok()?;
    opens_with(&json, opening).then_some(json)
}

pub fn opens_with(json: &RawValue, opening: char) -> bool {
    json.get().trim_start().starts_with(opening)
}

/// `{}` or `[]`: an object or array with no more than its brackets.
fn is_empty(json: &StoredJson) -> bool {
    json.get().bytes().filter(|byte| !byte.is_ascii_whitespace()).nth(2).is_none()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ratelimit {
    pub id: String,
    pub name: String,
    pub limit: i64,
    /// Window length in milliseconds.
    pub duration: i64,
    pub auto_apply: bool,
}

/// The ratelimits an identity holds once `sent` replaces `current`, sorted by name: a name still sent keeps
/// its ratelimit's id, a new name gets a new one, and a name no longer sent is gone.
pub fn replace_ratelimits(current: &[Ratelimit], sent: &[RatelimitInput]) -> Vec<Ratelimit> {
    let mut replaced: Vec<Ratelimit> = sent
        .iter()
        .map(|input| Ratelimit {
            id: current
                .iter()
                .find(|held| held.name == input.name)
                .map(|held| held.id.clone())
                .or_else(|| input.id.clone())
                .unwrap_or_else(|| new_id("rl")),
            name: input.name.clone(),
            limit: input.limit,
            duration: input.duration,
            auto_apply: input.auto_apply,
        })
        .collect();
    replaced.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    replaced
}

/// A ratelimit as a request names it; the schema has already bounded every field.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RatelimitInput {
    /// The id to keep for a new name (an import's); never read from a request.
    #[serde(skip)]
    pub id: Option<String>,
    pub name: String,
    #[serde(deserialize_with = "integer")]
    pub limit: i64,
    #[serde(deserialize_with = "integer")]
    pub duration: i64,
    pub auto_apply: bool,
}

/// JSON Schema's `integer` admits `57.0`; serde's `i64` does not. The schema has already bounded the value.
pub fn integer<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    number
        .as_i64()
        .or_else(|| {
            number.as_f64().filter(|float| float.fract() == 0.0 && float.abs() < 9.0e15).map(|float| float as i64)
        })
        .ok_or_else(|| serde::de::Error::custom(format!("{number} is not an integer")))
}

/// What a create did. A taken externalId is an outcome, not a failure: with an Idempotency-Key its 409 is
/// recorded and replayed like any answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Creation {
    Created {
        id: String,
    },
    /// A live identity of the workspace holds the externalId.
    AlreadyExists {
        existing_id: String,
    },
}

#[derive(Debug, Clone)]
pub struct NewIdentity {
    /// The id to keep (an import's); `None` for a new one.
    pub id: Option<String>,
    pub external_id: String,
    pub meta: Meta,
    pub ratelimits: Vec<RatelimitInput>,
}

/// Get-or-create by externalId; on an existing identity only the parts present are replaced.
#[derive(Debug, Clone)]
pub struct IdentityUpsert {
    pub external_id: String,
    pub meta: Option<Meta>,
    pub ratelimits: Option<Vec<RatelimitInput>>,
}

/// A wholesale replacement of whichever parts are present; `None` leaves that part as it is.
#[derive(Debug, Clone, Default)]
pub struct IdentityChanges {
    pub meta: Option<Meta>,
    pub ratelimits: Option<Vec<RatelimitInput>>,
    /// A new externalId (Sigil's own; Unkey's users asked for it in issue #4432).
    pub external_id: Option<String>,
}

/// What an update of an identity did. A taken externalId is an outcome, as in [`Creation`].
#[derive(Debug, Clone)]
pub enum IdentityUpdate {
    /// The identity as it stands after the update.
    Updated(Identity),
    NotFound,
    /// Another live identity of the workspace holds the externalId it was to be renamed to; nothing was
    /// written.
    ExternalIdTaken {
        existing_id: String,
    },
}

/// A list page: its identities in id order, and where the next page starts, if one follows.
#[derive(Debug)]
pub struct IdentityPage {
    pub identities: Vec<Identity>,
    pub next_cursor: Option<String>,
}

/// Most bytes of meta and ratelimits (as stored) one list page carries, past its first identity: with
/// meta up to 1 MiB each, a page of 100 could otherwise cost hundreds of MB in memory. A page cut short
/// by it has fewer identities than its limit and a cursor to the rest.
pub const PAGE_BYTES: i64 = 4 * 1024 * 1024;

/// One page request: identities whose id is at or after `cursor`, matching `search`, at most `limit`.
#[derive(Debug, Clone)]
pub struct IdentityPageQuery {
    pub cursor: Option<String>,
    /// A lower-cased SQL LIKE pattern, from [`search_pattern`].
    pub search_pattern: Option<String>,
    pub limit: i64,
    /// A search looks at most this many identities from the cursor on; a page that found too few in
    /// them ends early, with a cursor to where the next look starts.
    pub search_scan_rows: i64,
}

impl IdentityPageQuery {
    /// `None` when the page can hold nothing. No id or externalId holds a NUL, and PostgreSQL text cannot,
    /// so a search with one matches nothing, and a cursor `p\0…` bounds the same ids as `p\u{1}`.
    pub fn new(cursor: Option<String>, search: Option<&str>, limit: i64, search_scan_rows: i64) -> Option<Self> {
        if search.is_some_and(|search| search.contains('\0')) {
            return None;
        }
        let cursor = cursor.map(|cursor| match cursor.find('\0') {
            Some(nul) => format!("{}\u{1}", &cursor[..nul]),
            None => cursor,
        });
        Some(Self { cursor, search_pattern: search.and_then(search_pattern), limit, search_scan_rows })
    }
}

/// Checks what the JSON schema cannot: meta's serialized size and that ratelimit names are unique.
pub fn check_meta_and_ratelimits(
    meta: Option<&Meta>,
    ratelimits: Option<&[RatelimitInput]>,
) -> Result<(), ValidationError> {
    if let Some(limits) = ratelimits {
        check_unique_names(limits)?;
    }
    if let Some(meta) = meta {
        check_meta_size(meta)?;
    }
    Ok(())
}

fn check_unique_names(ratelimits: &[RatelimitInput]) -> Result<(), ValidationError> {
    let mut seen = HashSet::new();
    for (index, limit) in ratelimits.iter().enumerate() {
        if !seen.insert(limit.name.as_str()) {
            return Err(ValidationError::new(
                format!("/ratelimits/{index}/name"),
                format!("Ratelimit with name '{}' is already defined in the request", limit.name),
            )
            .with_fix("Give every ratelimit in the request a distinct name."));
        }
    }
    Ok(())
}

fn check_meta_size(meta: &Meta) -> Result<(), ValidationError> {
    let size = serde_json::to_vec(meta).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_META_BYTES {
        return Err(ValidationError::new(
            "/meta",
            format!("Metadata is too large: it must be at most {MAX_META_BYTES} bytes, but is {size} bytes."),
        )
        .with_fix("Store large documents elsewhere and keep a reference in meta."));
    }
    Ok(())
}

/// Unkey's search term: trimmed and case-folded; blank means no filter. Only ASCII letters fold, as the
/// databases' `LOWER` folds them (SQLite's folds no others, PostgreSQL's none others under the "C" collation
/// ids and externalIds have): a term folded further, with `Ö` made `ö`, matched nothing, not even its own text.
pub fn search_term(search: &str) -> Option<String> {
    let trimmed = search.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_ascii_lowercase())
}

/// [`search_term`] as a substring's LIKE pattern, with `%`, `_` and `\` matching literally.
fn search_pattern(search: &str) -> Option<String> {
    let term = search_term(search)?;
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    Some(pattern)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limit(name: &str) -> RatelimitInput {
        RatelimitInput { id: None, name: name.into(), limit: 10, duration: 1000, auto_apply: false }
    }

    #[test]
    fn duplicate_ratelimit_names_are_rejected_with_their_position() {
        let error = check_meta_and_ratelimits(None, Some(&[limit("api"), limit("web"), limit("api")])).unwrap_err();
        assert_eq!(error.location, "/ratelimits/2/name");
        assert!(error.message.contains("'api'"));
        assert!(check_meta_and_ratelimits(None, Some(&[limit("api"), limit("API")])).is_ok());
    }

    #[test]
    fn replaced_ratelimits_keep_the_ids_of_names_still_sent_and_come_in_name_order() {
        let current = replace_ratelimits(&[], &[limit("web"), limit("api")]);
        assert_eq!(current.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["api", "web"]);
        let mut changed_web = limit("web");
        changed_web.limit = 99;
        let replaced = replace_ratelimits(&current, &[changed_web, limit("cli")]);
        assert_eq!(replaced.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(), ["cli", "web"]);
        assert_eq!(replaced[1].id, current[1].id);
        assert_eq!(replaced[1].limit, 99);
        assert!(replaced[0].id.starts_with("rl_") && replaced[0].id != current[0].id);
    }

    #[test]
    fn meta_may_be_one_mebibyte_and_no_more() {
        let overhead = serde_json::to_vec(&json!({"k": ""})).unwrap().len();
        let fits: Meta = json!({"k": "x".repeat(MAX_META_BYTES - overhead)}).as_object().unwrap().clone();
        assert!(check_meta_and_ratelimits(Some(&fits), None).is_ok());
        let over: Meta = json!({"k": "x".repeat(MAX_META_BYTES - overhead + 1)}).as_object().unwrap().clone();
        let error = check_meta_and_ratelimits(Some(&over), None).unwrap_err();
        assert!(error.message.starts_with("Metadata is too large"));
    }

    #[test]
    fn integral_floats_are_integers() {
        let parsed: RatelimitInput =
            serde_json::from_value(json!({"name": "api", "limit": 57.0, "duration": 1000, "autoApply": true})).unwrap();
        assert_eq!(parsed.limit, 57);
        let fractional = json!({"name": "api", "limit": 57.5, "duration": 1000, "autoApply": true});
        assert!(serde_json::from_value::<RatelimitInput>(fractional).is_err());
    }

    #[test]
    fn search_is_trimmed_lowercased_and_escaped() {
        assert_eq!(search_pattern("  "), None);
        assert_eq!(search_pattern(" Acme ").as_deref(), Some("%acme%"));
        assert_eq!(search_pattern("Ölfirma").as_deref(), Some("%Ölfirma%"), "as LOWER leaves it");
        assert_eq!(search_pattern("100%_x\\").as_deref(), Some("%100\\%\\_x\\\\%"));
    }

    #[test]
    fn empty_meta_and_ratelimits_are_omitted_on_the_wire() {
        let meta = stored_json(" { } ".into(), '{').unwrap();
        let ratelimits = stored_json("[ ]".into(), '[').unwrap();
        let identity = Identity { id: "id_1".into(), external_id: "u".into(), meta, ratelimits };
        assert_eq!(serde_json::to_value(&identity).unwrap(), json!({"id": "id_1", "externalId": "u"}));
    }

    #[test]
    fn stored_json_is_passed_on_as_it_is_when_it_opens_as_expected() {
        let meta = stored_json(r#"{"b":1,"a":{"c":[]}}"#.into(), '{').unwrap();
        let ratelimits = stored_json(r#"[{"id":"rl_1"}]"#.into(), '[').unwrap();
        let identity = Identity { id: "id_1".into(), external_id: "u".into(), meta, ratelimits };
        assert_eq!(
            serde_json::to_string(&identity).unwrap(),
            r#"{"id":"id_1","externalId":"u","meta":{"b":1,"a":{"c":[]}},"ratelimits":[{"id":"rl_1"}]}"#
        );
        assert!(stored_json("[1]".into(), '{').is_none());
        assert!(stored_json("{}".into(), '[').is_none());
        assert!(stored_json("{\"a\":".into(), '{').is_none());
    }
}

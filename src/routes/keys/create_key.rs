//! `keys.createKey`: creates a key in an API and shows it this once; only its hash is stored. With an
//! `externalId`, the key belongs to the live identity holding it, created in the same transaction when there
//! is none: concurrent creates for one new externalId all succeed and share one identity (Unkey's issue
//! #4024 answered the loser 500). With an Idempotency-Key, a retry is answered the same key once more:
//! the record keeps it sealed under the server's record key (`sealed_secrets.rs`), which a server needs
//! for createKey to take the header at all.
//!
//! Permission: `api.*.create_key` or `api.<apiId>.create_key`; without it the answer is the 404 of a
//! missing API, as Unkey's, so that a key cannot tell which APIs exist. Errors: 400 (the schema; credit
//! rules; two ratelimits of one name, which Unkey silently merged; roles, permissions and recoverable keys,
//! which Sigil does not support yet; an Idempotency-Key on a server without a record key), 401, 404
//! `api_not_found`, 409 and 422 (idempotency), 413.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use crate::AppState;
use crate::domain::identity::{Meta, RatelimitInput, check_meta_and_ratelimits, replace_ratelimits};
use crate::domain::key::{Credits, DEFAULT_BYTE_LENGTH, Refill, make_key};
use crate::domain::permission::{ApiAction, Needed};
use crate::envelope::Envelope;
use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::idempotency::run_write;
use crate::routes::keys::not_supported;
use crate::store::NewKey;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateKeyRequest {
    api_id: String,
    prefix: Option<String>,
    name: Option<String>,
    byte_length: Option<usize>,
    external_id: Option<String>,
    meta: Option<Meta>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
    expires: Option<i64>,
    credits: Option<Credits>,
    ratelimits: Option<Vec<RatelimitInput>>,
    enabled: Option<bool>,
    #[serde(default)]
    recoverable: bool,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CreatedKey {
    key_id: String,
    key: String,
}

pub async fn create_key(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<CreateKeyRequest>,
) -> Result<Response, ApiError> {
    let request = write.body;
    let root_key = auth.authenticate(&state).await?;
    let workspace = root_key.workspace.clone();
    let api = state.store.get_api(&workspace, &request.api_id).await?;
    if api.is_none() || !root_key.may(Needed::api(ApiAction::CreateKey, Some(&request.api_id))) {
        return Err(ApiError::new(ErrorCode::ApiNotFound, "The specified API was not found."));
    }
    if let Some(idempotency_key) = &write.idempotency_key
        && state.idempotency.record_key.is_none()
        // A record made on a node that has a record key answers (or says it cannot) as any record does.
        && state.store.find_idempotency_key(&workspace, idempotency_key.key()).await?.is_none()
    {
        return Err(not_supported(
            "header.Idempotency-Key",
            "keys.createKey takes an Idempotency-Key only when the server has a record key (SIGIL_RECORD_KEY), \
             which seals the new key in the request's record: a record never holds a key in plaintext.",
        ));
    }
    check_unsupported(&request)?;
    check_credits(request.credits.as_ref())?;
    let credits = request.credits.map(|credits| Credits { refill: credits.refill.map(Refill::normalized), ..credits });
    check_meta_and_ratelimits(request.meta.as_ref(), request.ratelimits.as_deref())?;
    let made = make_key(request.prefix.as_deref(), request.byte_length.unwrap_or(DEFAULT_BYTE_LENGTH))
        .map_err(|error| ApiError::unexpected(anyhow::anyhow!("the operating system gave no random bytes: {error}")))?;
    let new = NewKey {
        api_id: request.api_id,
        hash: made.hash,
        start: made.start,
        name: request.name,
        meta: request.meta.as_ref().map(json_text),
        external_id: request.external_id,
        expires: request.expires,
        enabled: request.enabled.unwrap_or(true),
        credits: credits.as_ref().map(json_text),
        ratelimits: json_text(&replace_ratelimits(&[], &request.ratelimits.unwrap_or_default())),
    };
    let store = state.store.clone();
    let key = made.key;
    let answer = move |key_id: &String| {
        let created = CreatedKey { key_id: key_id.clone(), key: key.clone() };
        Ok::<_, ApiError>(Envelope::data(created).holding_secret(key.clone()))
    };
    Ok(run_write(
        &state,
        &auth.key_hash().unwrap_or_default(),
        &workspace,
        write.idempotency_key,
        answer,
        |recording| {
            let (store, workspace, new) = (store.clone(), workspace.clone(), new.clone());
            Box::pin(async move { store.create_key(&workspace, &new, recording).await })
        },
    )
    .await)
}

/// What Unkey's createKey takes and Sigil does not yet: refused by name, never silently ignored. The
/// defaults the official clients send (`recoverable: false`, empty lists) are not using them.
fn check_unsupported(request: &CreateKeyRequest) -> Result<(), ApiError> {
    let unsupported = [
        (!request.roles.is_empty(), "/roles", "Roles on keys are not supported by Sigil yet; send no roles."),
        (
            !request.permissions.is_empty(),
            "/permissions",
            "Permissions on keys are not supported by Sigil yet; send no permissions.",
        ),
        (request.recoverable, "/recoverable", "Recoverable (encrypted) keys are not supported by Sigil yet."),
    ];
    match unsupported.into_iter().find(|(used, _, _)| *used) {
        Some((_, location, message)) => Err(not_supported(location, message)),
        None => Ok(()),
    }
}

/// Unkey's credit rules, with its messages.
fn check_credits(credits: Option<&Credits>) -> Result<(), ApiError> {
    let Some(refill) = credits.and_then(|credits| credits.refill.as_ref()) else { return Ok(()) };
    if credits.is_some_and(|credits| credits.remaining.is_none()) {
        return Err(ApiError::invalid_input(
            "`credits.remaining` must be provided when `credits.refill` is set.",
            vec![ValidationError::new("/credits/remaining", "required when credits.refill is set")],
        ));
    }
    if refill.interval == "monthly" && refill.refill_day.is_none() {
        return Err(ApiError::invalid_input(
            "`refillDay` must be provided when the refill interval is `monthly`.",
            vec![ValidationError::new("/credits/refill/refillDay", "required for a monthly refill")],
        ));
    }
    Ok(())
}

/// A value as the store keeps it: JSON text.
fn json_text<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("requests' values always serialize")
}

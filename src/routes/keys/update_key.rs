//! `keys.updateKey`: changes the parts of a live key that the request sends; a part left out stays as it
//! is, and `null` clears it. `ratelimits` replaces the key's set (a name still sent keeps its id), `credits`
//! as Unkey's (null makes the key unlimited; `remaining: null` drops the refill too), and an `externalId`
//! links the key to the live identity holding it, created in the same transaction when there is none
//! (`externalId: null` unlinks; the identity is kept).
//!
//! The key is looked up first, then the permission: `api.*.update_key` or `api.<apiId>.update_key`, a plain
//! 403 as in Unkey. Errors: 400 (the schema; credit rules; two ratelimits of one name; roles and
//! permissions, which Sigil does not support yet), 401, 403, 404 `key_not_found`, 413. The 200 body's
//! `data` is `{}`.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

use crate::AppState;
use crate::domain::identity::{Meta, RatelimitInput, check_meta_and_ratelimits};
use crate::domain::key::{CreditsChange, CreditsPatch, KeyChanges, Patch, Refill};
use crate::domain::permission::ApiAction;
use crate::envelope::Envelope;
use crate::error::{ApiError, ValidationError};
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::routes::keys::{authorize_key_write, credits_refused, key_not_found, not_supported, write_key_changes};
use crate::store::KeyUpdate;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateKeyRequest {
    key_id: String,
    #[serde(default, deserialize_with = "sent")]
    name: Patch<String>,
    #[serde(default, deserialize_with = "sent")]
    external_id: Patch<String>,
    #[serde(default, deserialize_with = "sent")]
    meta: Patch<Meta>,
    #[serde(default, deserialize_with = "sent")]
    expires: Patch<i64>,
    #[serde(default, deserialize_with = "sent")]
    credits: Patch<CreditsRequest>,
    ratelimits: Option<Vec<RatelimitInput>>,
    enabled: Option<bool>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    permissions: Vec<String>,
}

#[derive(Deserialize)]
struct CreditsRequest {
    #[serde(default, deserialize_with = "sent")]
    remaining: Patch<i64>,
    #[serde(default, deserialize_with = "sent")]
    refill: Patch<Refill>,
}

/// A field that is in the body, null or not; one left out is `None` by `#[serde(default)]`.
fn sent<'de, D: Deserializer<'de>, T: Deserialize<'de>>(deserializer: D) -> Result<Patch<T>, D::Error> {
    Option::<T>::deserialize(deserializer).map(Some)
}

pub async fn update_key(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<UpdateKeyRequest>,
) -> Result<Response, ApiError> {
    let request = write.body;
    let root_key = auth.authenticate(&state).await?;
    let workspace = root_key.workspace.clone();
    authorize_key_write(&state, &root_key, &request.key_id, write.idempotency_key.as_ref(), ApiAction::UpdateKey)
        .await?;
    // Replacing roles or permissions with none is what a key without them already has.
    if !request.roles.is_empty() {
        return Err(not_supported("/roles", "Roles on keys are not supported by Sigil yet; send no roles."));
    }
    if !request.permissions.is_empty() {
        return Err(not_supported(
            "/permissions",
            "Permissions on keys are not supported by Sigil yet; send no permissions.",
        ));
    }
    if let Some(Some(CreditsRequest { refill: Some(Some(refill)), .. })) = &request.credits {
        check_refill_day(refill)?;
    }
    let meta = request.meta.as_ref().and_then(Option::as_ref);
    check_meta_and_ratelimits(meta, request.ratelimits.as_deref())?;
    let changes = KeyChanges {
        name: request.name,
        meta: request.meta.map(|meta| meta.map(|meta| Value::Object(meta).to_string())),
        external_id: request.external_id,
        expires: request.expires,
        enabled: request.enabled,
        credits: request.credits.map(|credits| {
            CreditsChange::Patch(
                credits.map(|credits| CreditsPatch { remaining: credits.remaining, refill: credits.refill }),
            )
        }),
        ratelimits: request.ratelimits,
    };
    let answer = |updated: &KeyUpdate| match updated {
        KeyUpdate::Updated(_) => Ok(Envelope::data(Map::<String, Value>::new())),
        KeyUpdate::NotFound => Err(key_not_found()),
        KeyUpdate::Refused(refusal) => Err(credits_refused(*refusal)),
    };
    let root_key_hash = auth.key_hash().unwrap_or_default();
    let key_id = request.key_id;
    Ok(write_key_changes(&state, &root_key_hash, &workspace, write.idempotency_key, key_id, changes, answer).await)
}

/// Unkey's refill rules on update, with its messages: a monthly refill names its day, a daily one none.
fn check_refill_day(refill: &Refill) -> Result<(), ApiError> {
    let message = match (refill.interval.as_str(), refill.refill_day) {
        ("monthly", None) => "`refillDay` must be provided when the refill interval is `monthly`.",
        ("daily", Some(_)) => "`refillDay` must not be provided when the refill interval is `daily`.",
        _ => return Ok(()),
    };
    Err(ApiError::invalid_input(message, vec![ValidationError::new("/credits/refill/refillDay", message)]))
}

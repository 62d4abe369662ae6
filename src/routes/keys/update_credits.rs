//! `keys.updateCredits`: sets, increments or decrements a live key's remaining credits, in one transaction
//! that holds the key's row, so that concurrent changes never lose one another. `set` with no value makes
//! the key unlimited and drops its refill; `decrement` floors at 0. The answer is the key's credits after
//! the change (`remaining` null when unlimited).
//!
//! The key is looked up first, then the permission: `api.*.update_key` or `api.<apiId>.update_key`, a plain
//! 403 as in Unkey. Errors: 400 (the schema; an increment or decrement without a value or of an unlimited
//! key, with Unkey's messages), 401, 403, 404 `key_not_found`, 413.

use axum::extract::State;
use axum::response::Response;
use serde::Deserialize;

use crate::AppState;
use crate::domain::key::{Credits, CreditsChange, KeyChanges};
use crate::domain::permission::ApiAction;
use crate::envelope::Envelope;
use crate::error::{ApiError, ValidationError};
use crate::extract::{RootKeyHeader, ValidWrite};
use crate::routes::keys::{authorize_key_write, credits_refused, key_not_found, write_key_changes};
use crate::store::{KeyUpdate, parse_credits};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCreditsRequest {
    key_id: String,
    operation: String,
    value: Option<i64>,
}

pub async fn update_credits(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    write: ValidWrite<UpdateCreditsRequest>,
) -> Result<Response, ApiError> {
    let request = write.body;
    let root_key = auth.authenticate(&state).await?;
    let change = match (request.operation.as_str(), request.value) {
        ("set", value) => CreditsChange::Set(value),
        ("increment", Some(value)) => CreditsChange::Increment(value),
        ("decrement", Some(value)) => CreditsChange::Decrement(value),
        _ => {
            let message = "When specifying an increment or decrement operation, a value must be provided.";
            return Err(ApiError::invalid_input(message, vec![ValidationError::new("/value", message)]));
        }
    };
    let workspace = root_key.workspace.clone();
    authorize_key_write(&state, &root_key, &request.key_id, write.idempotency_key.as_ref(), ApiAction::UpdateKey)
        .await?;
    let changes = KeyChanges { credits: Some(change), ..KeyChanges::default() };
    let answer = |updated: &KeyUpdate| match updated {
        KeyUpdate::Updated(key) => {
            let credits = key.credits.as_deref().map(parse_credits).transpose().map_err(ApiError::from)?;
            Ok(Envelope::data(credits.unwrap_or(Credits { remaining: None, refill: None })))
        }
        KeyUpdate::NotFound => Err(key_not_found()),
        KeyUpdate::Refused(refusal) => Err(credits_refused(*refusal)),
    };
    let root_key_hash = auth.key_hash().unwrap_or_default();
    let key_id = request.key_id;
    Ok(write_key_changes(&state, &root_key_hash, &workspace, write.idempotency_key, key_id, changes, answer).await)
}

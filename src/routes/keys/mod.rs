//! The `keys.*` operations.

mod create_key;
mod delete_key;
mod get_key;
mod page;
mod update_credits;
mod update_key;
mod verify_key;
mod whoami;

pub use create_key::create_key;
pub use delete_key::delete_key;
pub use get_key::{KeyResponseData, get_key};
pub use page::page_of_keys;
pub use update_credits::update_credits;
pub use update_key::update_key;
pub use verify_key::verify_key;
pub use whoami::whoami;

use axum::response::Response;

use crate::AppState;
use crate::domain::key::{CreditsRefusal, KeyChanges};
use crate::domain::permission::{ApiAction, Needed, RootKey};
use crate::domain::workspace::WorkspaceId;
use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::idempotency::IdempotencyKey;
use crate::idempotency::{WriteAnswer, run_write};
use crate::store::KeyUpdate;

/// A write to one key may go ahead: the key is looked up first (404), then the permission, a plain 403 as in
/// Unkey. A key that is gone, perhaps written away by the very request this one retries, is still found
/// when the request's Idempotency-Key has a record, for a root key that may do `action` to some key: the
/// record then answers (a replay goes only to the root key that made the first request).
async fn authorize_key_write(
    state: &AppState,
    root_key: &RootKey,
    key_id: &str,
    idempotency_key: Option<&IdempotencyKey>,
    action: ApiAction,
) -> Result<(), ApiError> {
    if let Some(key) = state.store.get_key(&root_key.workspace, key_id).await? {
        return Ok(root_key.authorize(Needed::api(action, Some(&key.api_id)))?);
    }
    let recorded = match idempotency_key {
        Some(idempotency_key) => {
            state.store.find_idempotency_key(&root_key.workspace, idempotency_key.key()).await?.is_some()
        }
        None => false,
    };
    if !recorded {
        return Err(key_not_found());
    }
    let needed = Needed::api(action, None);
    if !root_key.may_for_some(needed) {
        return Err(root_key.missing(needed).into());
    }
    Ok(())
}

fn key_not_found() -> ApiError {
    ApiError::new(ErrorCode::ApiKeyNotFound, "We could not find the requested key.")
}

/// What Unkey's keys API takes and Sigil does not yet: refused by name, never silently ignored.
fn not_supported(location: &str, message: &str) -> ApiError {
    ApiError::invalid_input(message, vec![ValidationError::new(location, message)])
}

fn credits_refused(refusal: CreditsRefusal) -> ApiError {
    let (location, message) = match refusal {
        CreditsRefusal::Unlimited => ("/operation", "You cannot increment or decrement a key with unlimited credits."),
        CreditsRefusal::RefillWithoutRemaining => (
            "/credits/remaining",
            "The key has unlimited credits, so a refill has nothing to refill: send `credits.remaining` with it.",
        ),
    };
    ApiError::invalid_input(message, vec![ValidationError::new(location, message)])
}

/// Applies `changes` to key `key_id` (updateKey's and updateCredits' write), answered by `answer`.
async fn write_key_changes<Answer: WriteAnswer>(
    state: &AppState,
    root_key_hash: &str,
    workspace: &WorkspaceId,
    idempotency_key: Option<IdempotencyKey>,
    key_id: String,
    changes: KeyChanges,
    answer: impl Fn(&KeyUpdate) -> Answer + Send + Sync + 'static,
) -> Response {
    let store = state.store.clone();
    run_write(state, root_key_hash, workspace, idempotency_key, answer, |recording| {
        let (store, workspace, key_id, changes) = (store.clone(), workspace.clone(), key_id.clone(), changes.clone());
        Box::pin(async move { store.update_key(&workspace, &key_id, &changes, recording).await })
    })
    .await
}

//! v1 `identities.getIdentity` (GET, query `identityId` or `externalId`; `identityId` wins when both come).
//!
//! Permission: `identity.*.read_identity` or `identity.<id>.read_identity`. Errors: 400 `BAD_REQUEST`
//! (neither given, before the key is checked, as Unkey did), 403, 404 `NOT_FOUND` (`identity <id> not
//! found`; Unkey's said `identity undefined not found` for a missing externalId, Sigil names it). As on v2,
//! a key that may not read an identity gets 403 whether it exists or not.

use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;

use crate::AppState;
use crate::domain::permission::{IdentityAction, Needed, Unreadable};
use crate::routes::v1::auth::authenticate;
use crate::routes::v1::identities::{V1Identity, by_external_id, by_id, not_found};
use crate::routes::v1::input::Fields;
use crate::routes::v1::{V1Error, V1Json};

pub async fn get_identity(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<V1Json<V1Identity>, V1Error> {
    let fields = Fields::of_query(query.as_deref());
    let identity_id = fields.string("identityId", 1)?;
    let external_id = fields.string("externalId", 1)?;
    let asked = identity_id
        .clone()
        .or(external_id)
        .ok_or_else(|| V1Error::bad_request("Provide either identityId or externalId"))?;
    let caller = authenticate(&state, &headers).await?;
    let read = Needed::identity(IdentityAction::Read, None);
    if !caller.root_key.may_for_some(read) {
        return Err(caller.root_key.missing(read).into());
    }
    let workspace = &caller.root_key.workspace;
    let found = match identity_id {
        Some(_) => by_id(&state, workspace, &asked).await?,
        None => by_external_id(&state, workspace, &asked).await?,
    };
    match caller.root_key.reads(&asked, found) {
        Ok(identity) => Ok(V1Json(V1Identity::of(&identity))),
        Err(Unreadable::NotFound) => Err(not_found(&asked)),
        Err(Unreadable::Forbidden(missing)) => Err(missing.into()),
    }
}

//! `keys.verifyKey`: whether a key may be used now, and what it is. Every outcome of the key itself is a
//! 200 with `valid` and `code`, as Unkey's: `NOT_FOUND` (unknown, deleted, of a deleted API, of another
//! workspace, or a key the root key may not verify, with no other field, so that nothing tells them
//! apart), `DISABLED`, `EXPIRED`, `RATE_LIMITED`, `USAGE_EXCEEDED` or `VALID`.
//!
//! Checks run in Unkey's order, each only while the key is still valid: enabled, expiry, ratelimits, then
//! credits. Ratelimits are the key's and its identity's merged by name (the key's winning): every
//! `autoApply` one at cost 1, and those the request names at their cost, or inline (`limit` and `duration`)
//! counted on the key. An identity's limits are counted on the identity, so all its keys share them. The
//! limits of one verification are taken from all or from none. Credits are spent (default cost 1) in a
//! transaction that holds the key's row, so no more verifications pass than there were credits, on one node
//! or many; a node's concurrent spends of one key share that transaction (`store/combiner.rs`). A
//! rate-limited verification spends no credits; one out of credits has spent its ratelimits.
//!
//! Permission: `api.*.verify_key` or `api.<apiId>.verify_key`. Errors: 400 (the schema; a permissions
//! query, which Sigil's keys cannot satisfy yet, having no permissions; an inline limit under 1 or a window
//! under 1 s), 401, 412 `precondition_failed` (a ratelimit named that neither the key nor its identity has,
//! as Unkey's), 413, 503.

use std::collections::BTreeMap;

use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::AppState;
use crate::domain::identity::Ratelimit;
use crate::domain::key::hash;
use crate::domain::permission::{ApiAction, Needed};
use crate::domain::ratelimit::{CounterKey, RatelimitCheck};
use crate::envelope::Envelope;
use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::extract::{RootKeyHeader, ValidJson};
use crate::routes::keys::not_supported;
use crate::store::{CreditsSpent, StoredKey, now_ms, parse_credits};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyKeyRequest {
    key: String,
    permissions: Option<String>,
    credits: Option<CreditsRequest>,
    #[serde(default)]
    ratelimits: Vec<RatelimitRequest>,
    /// Unkey sends these to its analytics; Sigil keeps no analytics.
    #[serde(default, rename = "tags")]
    _tags: Vec<String>,
    /// Unkey looks a missing key up again through its key migrations; Sigil has none to look through.
    #[serde(default, rename = "migrationId")]
    _migration_id: Option<String>,
}

#[derive(Deserialize)]
struct CreditsRequest {
    cost: i64,
}

#[derive(Deserialize)]
struct RatelimitRequest {
    name: String,
    cost: Option<i64>,
    limit: Option<i64>,
    duration: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    valid: bool,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Box<RawValue>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    credits: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<VerifiedIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ratelimits: Option<Vec<CheckedRatelimit>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VerifiedIdentity {
    id: String,
    external_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    meta: Option<Box<RawValue>>,
    /// The identity's own limits, less those a key limit of the same name shadows.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ratelimits: Vec<Ratelimit>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CheckedRatelimit {
    id: String,
    name: String,
    limit: i64,
    duration: i64,
    reset: i64,
    remaining: i64,
    exceeded: bool,
    auto_apply: bool,
}

impl Verification {
    fn not_found() -> Self {
        Self {
            valid: false,
            code: "NOT_FOUND",
            key_id: None,
            name: None,
            meta: None,
            expires: None,
            credits: None,
            enabled: None,
            identity: None,
            ratelimits: None,
        }
    }

    fn denied(mut self, code: &'static str) -> Envelope<Self> {
        self.code = code;
        Envelope::data(self)
    }
}

/// A limit a verification checks, and on whom it counts.
struct Limit {
    config: Ratelimit,
    identifier: String,
    cost: i64,
}

pub async fn verify_key(
    State(state): State<AppState>,
    auth: RootKeyHeader,
    ValidJson(request): ValidJson<VerifyKeyRequest>,
) -> Result<Envelope<Verification>, ApiError> {
    let root_key = auth.authenticate(&state).await?;
    if request.permissions.is_some() {
        return Err(not_supported(
            "/permissions",
            "Permissions on keys are not supported by Sigil yet, so no key could satisfy a permissions query; \
             send none.",
        ));
    }
    check_inline_limits(&request.ratelimits)?;
    let workspace = &root_key.workspace;
    let key = state.store.get_key_by_hash(workspace, &hash(&request.key)).await?;
    let Some(key) = key.filter(|key| root_key.may(Needed::api(ApiAction::VerifyKey, Some(&key.api_id)))) else {
        return Ok(Envelope::data(Verification::not_found()));
    };
    let stored_limits = StoredLimits::of(&key)?;
    let mut verification = describe(&key, &stored_limits)?;
    let now = now_ms();
    if !key.enabled {
        return Ok(verification.denied("DISABLED"));
    }
    if key.expires.is_some_and(|expires| now > expires) {
        return Ok(verification.denied("EXPIRED"));
    }
    let limits = limits_to_check(&key, stored_limits, &request.ratelimits)?;
    if !limits.is_empty() {
        let checks: Vec<RatelimitCheck> = limits
            .iter()
            .map(|limit| RatelimitCheck {
                counter: CounterKey {
                    workspace: workspace.as_str().to_owned(),
                    name: limit.config.name.clone(),
                    identifier: limit.identifier.clone(),
                    duration: limit.config.duration,
                },
                limit: limit.config.limit,
                cost: limit.cost,
            })
            .collect();
        let outcomes = state.ratelimits.take_ratelimits(&checks, now).await?;
        let rate_limited = outcomes.iter().any(|outcome| outcome.exceeded);
        verification.ratelimits = Some(
            limits
                .into_iter()
                .zip(outcomes)
                .map(|(limit, outcome)| CheckedRatelimit {
                    id: limit.config.id,
                    name: limit.config.name,
                    limit: limit.config.limit,
                    duration: limit.config.duration,
                    reset: outcome.reset,
                    remaining: outcome.remaining,
                    exceeded: outcome.exceeded,
                    auto_apply: limit.config.auto_apply,
                })
                .collect(),
        );
        if rate_limited {
            return Ok(verification.denied("RATE_LIMITED"));
        }
    }
    if verification.credits.is_some() {
        let cost = request.credits.map_or(1, |credits| credits.cost);
        // A cost of 0 always passes, even with nothing left (Unkey's rule), and writes nothing.
        if cost > 0 {
            match state.credit_spends.write((workspace.clone(), key.id.clone()), cost).await? {
                CreditsSpent::Spent { remaining } => verification.credits = Some(remaining),
                CreditsSpent::Exceeded { remaining } => {
                    verification.credits = Some(remaining);
                    return Ok(verification.denied("USAGE_EXCEEDED"));
                }
                // Made unlimited since it was read: nothing to spend.
                CreditsSpent::Unlimited => verification.credits = None,
                // Deleted since it was read: this verification is ordered after the delete.
                CreditsSpent::NotFound => return Ok(Envelope::data(Verification::not_found())),
                // So are a disable and an expiry: the key as it is now is shown.
                CreditsSpent::Disabled => {
                    verification.enabled = Some(false);
                    return Ok(verification.denied("DISABLED"));
                }
                CreditsSpent::Expired { expires } => {
                    verification.expires = Some(expires);
                    return Ok(verification.denied("EXPIRED"));
                }
            }
        }
    }
    verification.valid = true;
    Ok(verification.denied("VALID"))
}

/// The key as a verification shows it, before any check.
fn describe(key: &StoredKey, limits: &StoredLimits) -> Result<Verification, ApiError> {
    let json = |text: &str| RawValue::from_string(text.to_owned()).map_err(ApiError::unexpected);
    let credits = key.credits.as_deref().map(parse_credits).transpose()?.and_then(|credits| credits.remaining);
    let identity = match &key.identity {
        None => None,
        Some(identity) => Some(VerifiedIdentity {
            id: identity.id.clone(),
            external_id: identity.external_id.clone(),
            meta: Some(json(identity.meta.get())?).filter(|meta| meta.get() != "{}"),
            ratelimits: limits
                .identity
                .iter()
                .filter(|limit| !limits.key.iter().any(|own| own.name == limit.name))
                .cloned()
                .collect(),
        }),
    };
    Ok(Verification {
        valid: false,
        code: "VALID",
        key_id: Some(key.id.clone()),
        name: key.name.clone(),
        meta: key.meta.as_deref().map(json).transpose()?.filter(|meta| meta.get() != "{}"),
        expires: key.expires,
        credits,
        enabled: Some(key.enabled),
        identity,
        ratelimits: None,
    })
}

/// The ratelimits stored on the key and on its live identity, read once per verification.
struct StoredLimits {
    key: Vec<Ratelimit>,
    identity: Vec<Ratelimit>,
}

impl StoredLimits {
    fn of(key: &StoredKey) -> Result<Self, ApiError> {
        let identity = match &key.identity {
            Some(identity) => serde_json::from_str(identity.ratelimits.get()).map_err(ApiError::unexpected)?,
            None => Vec::new(),
        };
        Ok(Self { key: serde_json::from_str(&key.ratelimits).map_err(ApiError::unexpected)?, identity })
    }
}

/// The limits this verification checks, by name: the key's and its identity's merged (the key's winning),
/// those that apply themselves at cost 1, and those the request names.
fn limits_to_check(
    key: &StoredKey,
    limits: StoredLimits,
    requested: &[RatelimitRequest],
) -> Result<Vec<Limit>, ApiError> {
    let mut stored: BTreeMap<String, (Ratelimit, String)> = BTreeMap::new();
    if let Some(identity) = &key.identity {
        for limit in limits.identity {
            stored.insert(limit.name.clone(), (limit, identity.id.clone()));
        }
    }
    for limit in limits.key {
        stored.insert(limit.name.clone(), (limit, key.id.clone()));
    }
    let mut checked: BTreeMap<String, Limit> = stored
        .values()
        .filter(|(config, _)| config.auto_apply)
        .map(|(config, identifier)| {
            (config.name.clone(), Limit { config: config.clone(), identifier: identifier.clone(), cost: 1 })
        })
        .collect();
    for request in requested {
        let cost = request.cost.unwrap_or(1);
        let limit = match (request.limit, request.duration) {
            (Some(limit), Some(duration)) => Limit {
                config: Ratelimit { id: String::new(), name: request.name.clone(), limit, duration, auto_apply: false },
                identifier: key.id.clone(),
                cost,
            },
            _ => match stored.get(&request.name) {
                Some((config, identifier)) => Limit { config: config.clone(), identifier: identifier.clone(), cost },
                None => return Err(no_such_ratelimit(key, &request.name)),
            },
        };
        checked.insert(request.name.clone(), limit);
    }
    Ok(checked.into_values().collect())
}

/// Unkey's 412, with its message.
fn no_such_ratelimit(key: &StoredKey, name: &str) -> ApiError {
    let detail = match &key.identity {
        Some(identity) => format!(
            "ratelimit '{name}' was requested but does not exist for key '{}' nor identity: '{}' external ID: '{}'",
            key.id, identity.id, identity.external_id
        ),
        None => format!(
            "ratelimit '{name}' was requested but does not exist for key '{}' and there is no identity connected.",
            key.id
        ),
    };
    ApiError::new(ErrorCode::PreconditionFailed, detail)
}

/// Unkey lets an inline limit of 0 or a window under 1 s through unchecked (its limiter refuses them and
/// fails open); a caller sending one means a limit, so Sigil says it cannot count it.
fn check_inline_limits(requested: &[RatelimitRequest]) -> Result<(), ApiError> {
    for (index, request) in requested.iter().enumerate() {
        if let (Some(limit), Some(duration)) = (request.limit, request.duration)
            && (limit < 1 || duration < 1000)
        {
            let message = "An inline ratelimit needs a limit of at least 1 and a duration of at least 1000 ms.";
            return Err(ApiError::invalid_input(
                message,
                vec![ValidationError::new(format!("/ratelimits/{index}"), message)],
            ));
        }
    }
    Ok(())
}

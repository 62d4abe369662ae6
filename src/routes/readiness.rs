//! `GET /v2/readiness`: 200 while the database (and Redis, when it keeps the ratelimit counters) answers
//! within [`READINESS_BOUND`], 503 in the error envelope otherwise, for load balancers and orchestrators. (`/v2/liveness` never asks the database: a
//! node whose database is away is alive, and restarting it would not help.)

use std::time::Duration;

use axum::extract::State;
use serde::Serialize;

use crate::AppState;
use crate::envelope::Envelope;
use crate::error::{ApiError, ErrorCode};

/// Well under the database deadline, so that a probe with a timeout of a few seconds gets an answer.
const READINESS_BOUND: Duration = Duration::from_secs(2);

#[derive(Serialize)]
pub struct Readiness {
    message: &'static str,
}

pub async fn readiness(State(state): State<AppState>) -> Result<Envelope<Readiness>, ApiError> {
    let ready = async { state.store.ready().await.and(state.ratelimits.counters_ready().await) };
    match tokio::time::timeout(READINESS_BOUND, ready).await {
        Ok(Ok(())) => Ok(Envelope::data(Readiness { message: "OK" })),
        Ok(Err(error)) => Err(error.into()),
        Err(_) => Err(ApiError::new(
            ErrorCode::ServiceUnavailable,
            format!("The database did not answer within {} ms.", READINESS_BOUND.as_millis()),
        )),
    }
}

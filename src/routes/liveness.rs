//! `GET /` and `GET /v2/liveness`: 200 while the process serves, so scripts can wait for readiness.

use serde::Serialize;

use crate::envelope::Envelope;

#[derive(Serialize)]
pub struct Liveness {
    message: &'static str,
}

pub async fn liveness() -> Envelope<Liveness> {
    Envelope::data(Liveness { message: "OK" })
}

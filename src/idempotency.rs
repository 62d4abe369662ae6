//! How a write handler runs its write and answers, with or without an `Idempotency-Key`
//! (draft-ietf-httpapi-idempotency-key-header, with Stripe-style replay).
//!
//! A handler validates, authenticates and authorizes as for any request, then hands its write to
//! [`run_write`]. The write runs in a task of its own, so it runs to its end whatever becomes of the request
//! (a timeout, a dropped connection): a retry then finds its answer. With a key, the write's answer is
//! stored in the write's own transaction (`store/idempotency_keys.rs`), so a write is never stored without
//! its answer, and a retry with the same key, root key, operation and body gets that answer byte for byte
//! with `Idempotent-Replayed: true`. The same key with another request is 422 `key_reused`. A retry that
//! arrives while the first still runs waits for it: woken in this process when it ends
//! ([`KeyTurns`]), backing off across nodes, up to `in_flight_wait`, then 409 `request_in_progress`.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::AppState;
use crate::domain::idempotency::{RecordedAnswer, StoredResponse, fingerprint, is_valid_key};
use crate::domain::workspace::WorkspaceId;
use crate::envelope::{Envelope, REQUEST, RequestTag};
use crate::error::{ApiError, ErrorCode, ValidationError};
use crate::sealed_secrets::{self, RecordKey};
use crate::store::{Recorded, Recording, StoreError};

pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub static REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

/// Retries of one key waiting in this process at most; more are answered 409 at once.
const MAX_WAITING_PER_KEY: usize = 64;
/// The first and the longest pause of a retry whose key another node's write holds.
const FIRST_BACKOFF: Duration = Duration::from_millis(20);
const LONGEST_BACKOFF: Duration = Duration::from_millis(200);

#[derive(Debug, Clone)]
pub struct IdempotencySettings {
    /// How long an answered request is replayed.
    pub retention: Duration,
    /// How long a retry waits for a still-running first request before answering 409.
    pub in_flight_wait: Duration,
    /// Seals the secrets of answers that show one (createKey's new key) in their records; without it, such
    /// answers take no Idempotency-Key.
    pub record_key: Option<Arc<RecordKey>>,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self { retention: Duration::from_secs(24 * 60 * 60), in_flight_wait: Duration::from_secs(5), record_key: None }
    }
}

/// A write request's `Idempotency-Key`, with what makes a retry the same request.
pub struct IdempotencyKey {
    key: String,
    path: String,
    body: Bytes,
}

impl IdempotencyKey {
    /// The request's key, if it sent one; 400 when the header is no valid key.
    pub fn of_request(headers: &HeaderMap, path: &str, body: &Bytes) -> Result<Option<Self>, ApiError> {
        let Some(header) = headers.get(IDEMPOTENCY_KEY_HEADER) else {
            return Ok(None);
        };
        let key = header.to_str().ok().filter(|key| is_valid_key(key)).ok_or_else(invalid_key)?;
        Ok(Some(Self { key: key.to_owned(), path: path.to_owned(), body: body.clone() }))
    }

    pub fn key(&self) -> &str {
        &self.key
    }
}

/// What a write handler answers (v2's envelope or v1's bare body), as a record keeps it for replay.
pub trait WriteAnswer: IntoResponse {
    fn stored(&self) -> StoredResponse;

    /// A string the answer shows that its record must keep sealed.
    fn secret(&self) -> Option<&str> {
        None
    }

    /// How this API answers a failure that is not the write's own: a busy or reused key, a database failure.
    fn failure(error: ApiError) -> Response;
}

impl<Body: Serialize> WriteAnswer for Result<Envelope<Body>, ApiError> {
    fn stored(&self) -> StoredResponse {
        match self {
            Ok(envelope) => StoredResponse { status: StatusCode::OK.as_u16(), body: envelope.to_json() },
            Err(error) => StoredResponse { status: error.code.status().as_u16(), body: error.body_json() },
        }
    }

    fn secret(&self) -> Option<&str> {
        self.as_ref().ok().and_then(Envelope::secret)
    }

    fn failure(error: ApiError) -> Response {
        error.into_response()
    }
}

/// A store write of outcome `T`, given the key to record its answer under.
pub type StoreWrite<T> = Pin<Box<dyn Future<Output = Result<Recorded<T>, StoreError>> + Send>>;

/// Runs `write` to its end and answers with `answer` of its outcome. With an Idempotency-Key, the answer is
/// recorded by the write itself, or the key's record answers instead.
pub async fn run_write<T, Answer, Write>(
    state: &AppState,
    root_key_hash: &str,
    workspace: &WorkspaceId,
    idempotency_key: Option<IdempotencyKey>,
    answer: impl Fn(&T) -> Answer + Send + Sync + 'static,
    write: Write,
) -> Response
where
    T: Send + 'static,
    Answer: WriteAnswer,
    Write: Fn(Option<Recording<T>>) -> StoreWrite<T>,
{
    let Some(idempotency_key) = idempotency_key else {
        // Without a key there is no record, so nothing to open.
        let sealing = Sealing { key: None, bound_to: String::new() };
        return respond(run_to_the_end(write(None), None).await, &answer, &sealing);
    };
    let give_up_at = Instant::now() + state.idempotency.in_flight_wait;
    let fingerprint = fingerprint(root_key_hash, &idempotency_key.path, &idempotency_key.body);
    let sealing = Arc::new(Sealing {
        key: state.idempotency.record_key.clone(),
        bound_to: format!("{}\0{}\0{fingerprint}", workspace.as_str(), idempotency_key.key),
    });
    // A retry after a timeout finds its answer here, without waiting for a turn or queueing for the writer.
    match recorded_answer(state, workspace, &idempotency_key.key, &fingerprint).await {
        Ok(Some(recorded)) => return respond_recorded::<Answer>(recorded, &sealing),
        Ok(None) => {}
        Err(error) => return Answer::failure(error),
    }
    let turn = match state.idempotency_turns.take(workspace, &idempotency_key.key, give_up_at).await {
        Ok(turn) => Arc::new(turn),
        Err(busy) => return Answer::failure(busy),
    };
    let answer = Arc::new(answer);
    let recording = Recording {
        fingerprint,
        key: idempotency_key.key,
        keep_until: unix_ms_after(state.idempotency.retention),
        answer: stored_answer(Arc::clone(&answer), REQUEST.try_with(RequestTag::clone).ok(), Arc::clone(&sealing)),
    };
    let mut backoff = FIRST_BACKOFF;
    let mut look_again = turn.waited;
    loop {
        // The request whose turn came before this one may have just answered the key.
        if look_again {
            match recorded_answer(state, workspace, &recording.key, &recording.fingerprint).await {
                Ok(Some(recorded)) => return respond_recorded::<Answer>(recorded, &sealing),
                Ok(None) => {}
                Err(error) => return Answer::failure(error),
            }
        }
        match run_to_the_end(write(Some(recording.clone())), Some(Arc::clone(&turn))).await {
            Err(StoreError::IdempotencyKeyBusy) if Instant::now() + backoff < give_up_at => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(LONGEST_BACKOFF);
                look_again = true;
            }
            outcome => return respond(outcome, &*answer, &sealing),
        }
    }
}

/// What the key's record answers this request, read without the writer.
async fn recorded_answer(
    state: &AppState,
    workspace: &WorkspaceId,
    key: &str,
    fingerprint: &str,
) -> Result<Option<RecordedAnswer>, ApiError> {
    let record = state.store.find_idempotency_key(workspace, key).await?;
    Ok(record.map(|record| record.answer_for(fingerprint)))
}

/// Runs `write` to its end, holding `turn` until then: a write that started runs to its end, and its answer
/// is recorded, even when the request is given up (a timeout, a dropped connection). A write that ends at
/// its first step (a 409 that memory decides, say) ends here; one that waits goes on in a task of its own.
/// Spawning every write cost a 409 decided from memory 6 µs of its 21 µs of CPU (wrk -t1 -c32).
async fn run_to_the_end<T: Send + 'static>(
    write: StoreWrite<T>,
    turn: Option<Arc<Turn>>,
) -> Result<Recorded<T>, StoreError> {
    let mut to_the_end = Box::pin(async move {
        let outcome = write.await;
        if outcome.is_ok() {
            // Test-only (the `failpoints` feature): the process dies after a commit, before it answers.
            fail::fail_point!("write-committed", |_| std::process::abort());
        }
        drop(turn);
        outcome
    });
    let failed =
        |failure: &dyn std::fmt::Display| Err(StoreError::InvalidData(format!("the write's task failed: {failure}")));
    // A panic in the first step is answered as one in the task would be.
    let first_step = std::future::poll_fn(|context| {
        Poll::Ready(std::panic::catch_unwind(AssertUnwindSafe(|| to_the_end.as_mut().poll(context))))
    });
    match first_step.await {
        Ok(Poll::Ready(outcome)) => return outcome,
        Ok(Poll::Pending) => {}
        Err(_) => return failed(&"it panicked"),
    }
    // The task goes on naming the request in what it logs.
    let spawned = match REQUEST.try_with(RequestTag::clone) {
        Ok(tag) => tokio::spawn(REQUEST.scope(tag, to_the_end)),
        Err(_) => tokio::spawn(to_the_end),
    };
    spawned.await.unwrap_or_else(|failure| failed(&failure))
}

fn respond<T, Answer: WriteAnswer>(
    outcome: Result<Recorded<T>, StoreError>,
    answer: &impl Fn(&T) -> Answer,
    sealing: &Sealing,
) -> Response {
    match outcome {
        Ok(Recorded::Ran(ran)) => answer(&ran).into_response(),
        Ok(Recorded::Answered(recorded)) => respond_recorded::<Answer>(recorded, sealing),
        Err(error) => Answer::failure(ApiError::from(error)),
    }
}

fn respond_recorded<Answer: WriteAnswer>(recorded: RecordedAnswer, sealing: &Sealing) -> Response {
    match recorded {
        RecordedAnswer::Replay(stored) => match sealing.open(stored) {
            Some(stored) => replay(stored),
            // Another node may hold the record key that sealed it: 503 sends the retry on.
            None => Answer::failure(ApiError::new(
                ErrorCode::ServiceUnavailable,
                "The answer recorded under this Idempotency-Key holds a key sealed under a record key \
                 (SIGIL_RECORD_KEY) that this server does not have. Retry on a server that has it.",
            )),
        },
        RecordedAnswer::KeyReused => Answer::failure(ApiError::idempotency_key_reused()),
    }
}

/// How the secrets of one record's answer are sealed and opened.
struct Sealing {
    key: Option<Arc<RecordKey>>,
    /// The record's workspace, key and fingerprint: a sealed value opens in this record alone.
    bound_to: String,
}

impl Sealing {
    fn seal(&self, stored: StoredResponse, secret: Option<&str>) -> StoredResponse {
        match secret {
            Some(secret) => StoredResponse {
                body: sealed_secrets::seal_in(&stored.body, secret, self.key.as_deref(), &self.bound_to),
                ..stored
            },
            None => stored,
        }
    }

    fn open(&self, stored: StoredResponse) -> Option<StoredResponse> {
        let body = sealed_secrets::open_in(stored.body, self.key.as_deref(), &self.bound_to)?;
        Some(StoredResponse { body, ..stored })
    }
}

/// `answer` as the record keeps it: rendered inside the write's transaction, with the request's id, as
/// the live answer is rendered after it, so that both are the same bytes once its secret, if any, is opened.
fn stored_answer<T, Answer: WriteAnswer>(
    answer: Arc<impl Fn(&T) -> Answer + Send + Sync + 'static>,
    request: Option<RequestTag>,
    sealing: Arc<Sealing>,
) -> crate::store::Answer<T> {
    Arc::new(move |outcome: &T| {
        let render = || {
            let rendered = answer(outcome);
            sealing.seal(rendered.stored(), rendered.secret())
        };
        match &request {
            Some(request) => REQUEST.sync_scope(request.clone(), render),
            None => render(),
        }
    })
}

fn replay(stored: StoredResponse) -> Response {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = (status, stored.body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(&REPLAYED_HEADER, HeaderValue::from_static("true"));
    response
}

fn unix_ms_after(duration: Duration) -> i64 {
    let at = std::time::SystemTime::now() + duration;
    let since_epoch = at.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

fn invalid_key() -> ApiError {
    ApiError::invalid_input(
        "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
        vec![
            ValidationError::new("header.Idempotency-Key", "invalid idempotency key")
                .with_fix("Send a unique string such as a UUID, at most 255 characters."),
        ],
    )
}

/// Whose turn it is to run a write under each Idempotency-Key in this process: one request at a time, the
/// others waiting (at most [`MAX_WAITING_PER_KEY`]) to be woken, in order, when it ends. A waiting request
/// holds no connection.
#[derive(Default)]
pub struct KeyTurns {
    keys: Mutex<HashMap<(WorkspaceId, String), KeyInUse>>,
}

struct KeyInUse {
    turn: Arc<Semaphore>,
    /// Requests holding or waiting for the turn.
    users: usize,
}

/// A request's turn at a key; the next request's begins when it is dropped.
pub struct Turn {
    turns: Arc<KeyTurns>,
    key: (WorkspaceId, String),
    held: Option<OwnedSemaphorePermit>,
    /// Whether another request held the turn first.
    waited: bool,
}

impl KeyTurns {
    /// Waits, until `give_up_at`, for the turn at `key`; 409 `request_in_progress` when it does not come.
    pub async fn take(
        self: &Arc<Self>,
        workspace: &WorkspaceId,
        key: &str,
        give_up_at: Instant,
    ) -> Result<Turn, ApiError> {
        let key = (workspace.clone(), key.to_owned());
        let semaphore = {
            let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
            let in_use =
                keys.entry(key.clone()).or_insert_with(|| KeyInUse { turn: Arc::new(Semaphore::new(1)), users: 0 });
            if in_use.users > MAX_WAITING_PER_KEY {
                return Err(ApiError::idempotency_request_in_progress());
            }
            in_use.users += 1;
            Arc::clone(&in_use.turn)
        };
        // From here the turn counts as a user, and gives up its place when dropped, whatever happens.
        let mut turn = Turn { turns: Arc::clone(self), key, held: None, waited: false };
        if let Ok(held) = Arc::clone(&semaphore).try_acquire_owned() {
            turn.held = Some(held);
            return Ok(turn);
        }
        turn.waited = true;
        match tokio::time::timeout_at(give_up_at.into(), semaphore.acquire_owned()).await {
            Ok(Ok(held)) => {
                turn.held = Some(held);
                Ok(turn)
            }
            _ => Err(ApiError::idempotency_request_in_progress()),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut keys = self.turns.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(in_use) = keys.get_mut(&self.key) {
            in_use.users -= 1;
            if in_use.users == 0 {
                keys.remove(&self.key);
            }
        }
    }
}

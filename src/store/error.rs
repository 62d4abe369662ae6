//! What can go wrong in storage, and how a driver's error is sorted into it.

/// What can go wrong in storage, sorted by what the caller should do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A live identity in the workspace already has this externalId.
    #[error("a live identity with this externalId already exists ({existing_id})")]
    Conflict { existing_id: String },
    /// The database did not answer in time or the connection broke; the request may succeed if retried.
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// The database did not answer within the deadline of one unit of work (`DATABASE_DEADLINE`); a
    /// write cut short by it may or may not have committed.
    #[error("the database did not answer in time")]
    TimedOut,
    /// The database has no room left for the write (SQLite's disk is full); reads still work, and writes
    /// work again once space is freed.
    #[error("database storage is full: {0}")]
    StorageFull(#[source] sqlx::Error),
    /// Any other database failure: a bug or a broken database.
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The database aborted the transaction to resolve a race (serialization failure, deadlock, SQLite busy);
    /// it was rolled back, so running it again is safe. Retried a bounded number of times before surfacing.
    #[error("transient database failure: {0}")]
    Transient(#[source] sqlx::Error),
    /// The operation lost a race too many times in a row; retrying the request can succeed.
    #[error("contended: {0}")]
    Contended(&'static str),
    /// Another node is running a write under the same Idempotency-Key; nothing was written. Retrying after
    /// that write finished replays its answer.
    #[error("another request with this idempotency key is running")]
    IdempotencyKeyBusy,
    /// This process keeps as many ratelimit counters as it may (SQLite's live in its memory): a verification
    /// that needs a new one is refused, nothing counted, until windows end.
    #[error("too many live ratelimit counters")]
    CountersFull,
    /// A stored value could not be read back (e.g. meta that is not JSON).
    #[error("stored data is invalid: {0}")]
    InvalidData(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::Unavailable(error),
            sqlx::Error::Database(database) => match cause(database.code().as_deref()) {
                Cause::Transient => Self::Transient(error),
                Cause::TimedOut => Self::TimedOut,
                Cause::Unavailable => Self::Unavailable(error),
                Cause::StorageFull => Self::StorageFull(error),
                Cause::Other => Self::Database(error),
            },
            _ => Self::Database(error),
        }
    }
}

enum Cause {
    Transient,
    TimedOut,
    Unavailable,
    StorageFull,
    Other,
}

/// Sorts a database's error code: PostgreSQL's SQLSTATE (always five characters) or SQLite's result code
/// (at most four digits; an extended code such as `SQLITE_IOERR_FSYNC`, 1034, has its primary code in the
/// low byte).
fn cause(code: Option<&str>) -> Cause {
    let Some(code) = code else { return Cause::Other };
    if code.len() == 5 {
        return match code {
            // serialization_failure, deadlock_detected
            "40001" | "40P01" => Cause::Transient,
            // query_canceled: this connection's own statement_timeout
            "57014" => Cause::TimedOut,
            // read_only_sql_transaction (a standby after a failover), statement_completion_unknown
            "25006" | "40003" => Cause::Unavailable,
            // connection exceptions, insufficient resources (too many connections), operator intervention
            // (shutdown, starting up), system errors
            _ if ["08", "53", "57", "58"].contains(&&code[..2]) => Cause::Unavailable,
            _ => Cause::Other,
        };
    }
    match code.parse::<i64>().map(|code| code & 0xff) {
        // SQLITE_BUSY, SQLITE_LOCKED
        Ok(5 | 6) => Cause::Transient,
        // SQLITE_FULL
        Ok(13) => Cause::StorageFull,
        // SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR, SQLITE_CANTOPEN
        Ok(7 | 8 | 10 | 14) => Cause::Unavailable,
        _ => Cause::Other,
    }
}

impl StoreError {
    /// What failed in the database, named for operators' metrics; `None` when the database did its job and
    /// the operation refused (a conflict, a race lost too often).
    pub fn failure_kind(&self) -> Option<&'static str> {
        match self {
            Self::TimedOut => Some("timeout"),
            Self::Unavailable(_) => Some("unavailable"),
            Self::StorageFull(_) => Some("storage_full"),
            Self::Transient(_) => Some("transient"),
            Self::InvalidData(_) => Some("invalid_data"),
            Self::Database(_) => Some("other"),
            Self::Conflict { .. } | Self::Contended(_) | Self::IdempotencyKeyBusy | Self::CountersFull => None,
        }
    }

    /// Whether the database did its job and the operation was refused (a conflict, a race lost, a busy
    /// Idempotency-Key, full counters): decided before the write changed anything, on a connection that is
    /// still sound.
    pub fn is_refusal(&self) -> bool {
        self.failure_kind().is_none()
    }

    /// Whether the connection the error came from is still sound: after a refusal, data found damaged once
    /// read, or a transaction the database aborted to resolve a race (rolled back before the connection's
    /// next statement), it is; after anything else it may hold a half-done exchange, or talk to a database
    /// that stopped answering.
    pub fn leaves_the_connection_sound(&self) -> bool {
        self.is_refusal() || matches!(self, Self::InvalidData(_) | Self::Transient(_))
    }

    /// The same kind of error, for each of several callers that one failure (of a group commit, of a
    /// combined write) answers: sqlx errors cannot be cloned.
    pub(crate) fn same_kind(&self) -> Self {
        let same = |error: &sqlx::Error| match error {
            sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
            other => sqlx::Error::Protocol(format!("the group's write failed: {other}")),
        };
        match self {
            Self::Conflict { existing_id } => Self::Conflict { existing_id: existing_id.clone() },
            Self::Unavailable(error) => Self::Unavailable(same(error)),
            Self::TimedOut => Self::TimedOut,
            Self::StorageFull(error) => Self::StorageFull(same(error)),
            Self::Database(error) => Self::Database(same(error)),
            Self::Transient(error) => Self::Transient(same(error)),
            Self::Contended(reason) => Self::Contended(reason),
            Self::IdempotencyKeyBusy => Self::IdempotencyKeyBusy,
            Self::CountersFull => Self::CountersFull,
            Self::InvalidData(reason) => Self::InvalidData(reason.clone()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn error_codes_sort_into_what_the_caller_should_do() {
        use super::{Cause, cause};
        let sorted = |code| std::mem::discriminant(&cause(Some(code)));
        let is = |expected: Cause| std::mem::discriminant(&expected);
        for (code, expected) in [
            ("40001", Cause::Transient),
            ("40P01", Cause::Transient),
            ("57014", Cause::TimedOut),
            ("57P01", Cause::Unavailable),
            ("57P03", Cause::Unavailable),
            ("08006", Cause::Unavailable),
            ("53300", Cause::Unavailable),
            ("25006", Cause::Unavailable),
            ("23505", Cause::Other),
            ("42P01", Cause::Other),
            ("5", Cause::Transient),
            ("517", Cause::Transient),
            ("773", Cause::Transient),
            ("13", Cause::StorageFull),
            ("1034", Cause::Unavailable),
            ("8", Cause::Unavailable),
            ("19", Cause::Other),
            ("2067", Cause::Other),
        ] {
            assert_eq!(sorted(code), is(expected), "{code}");
        }
    }
}

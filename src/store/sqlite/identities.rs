//! What SQLite does its own way for identities: the creates waiting for the next group commit are inserted
//! by one statement, and a list page comes back as one row of JSON.

use std::collections::HashSet;

use sqlx::SqliteConnection;

use crate::domain::identity::{
    Creation, Identity, IdentityChanges, IdentityPageQuery, IdentityUpdate, IdentityUpsert, Meta, NewIdentity,
    replace_ratelimits,
};
use crate::domain::ids::new_id;
use crate::domain::workspace::WorkspaceId;
use crate::store::changes::Written;
use crate::store::identities::{
    INLINE_PAYLOAD_BYTES, IdentityBackend, ListedRow, identity_page, ratelimits_json, stored_ratelimits, to_json,
};
use crate::store::sqlite::SqliteStore;
use crate::store::{StoreError, now_ms, within_deadline, within_deadline_at};

/// Inserts rows of `(id, workspace_id, external_id, meta, ratelimits, created_at)`, bound as parameters, in
/// their order, skipping rows of NULLs and any whose externalId a live identity holds (an earlier row of
/// the same statement counts), and returns the ids it stored. Every statement is a hand-off to sqlx's
/// SQLite thread and back, two context switches and a futex call or two, which were most of a create's CPU
/// time when each create was a statement of its own. The conflict target is the live-externalId index
/// alone: an id that collided (a ULID, so never in practice) fails the statement rather than pass for a
/// stored create. The rows were once one JSON array read through `json_each`, which SQLite parsed, wrote
/// back as text and parsed again for every row: a fifth of a create's instructions.
fn insert_identities_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO identities (id, workspace_id, external_id, meta, ratelimits, created_at) \
         SELECT * FROM (VALUES {values}) WHERE column1 IS NOT NULL \
         ON CONFLICT (external_id_folded, external_id, workspace_id) WHERE deleted_at IS NULL DO NOTHING RETURNING id"
    )
}

/// The insert statements, for 1, 2, 4, … [`STATEMENT_ROWS`] rows. A statement's rows are padded with NULLs
/// up to the next of these sizes, so that SQLite prepares, and sqlx keeps, nine statements, not one per size.
static INSERT_IDENTITIES: std::sync::LazyLock<Vec<(usize, String)>> = std::sync::LazyLock::new(|| {
    std::iter::successors(Some(1), |rows: &usize| (*rows < STATEMENT_ROWS).then_some(rows * 2))
        .map(|rows| (rows, insert_identities_sql(rows)))
        .collect()
});

/// Rows one insert statement takes at most: a power of two, the largest of the statements' sizes.
const STATEMENT_ROWS: usize = 256;
const _: () = assert!(STATEMENT_ROWS.is_power_of_two());

/// A create on its way to the group commit: all of the row but its id and time, which the group gives, so
/// that ids keep the order in which identities were stored.
pub(super) struct IdentityInsert {
    workspace: WorkspaceId,
    external_id: String,
    meta: String,
    ratelimits: String,
    /// The new identity's id, or the conflict with the live one holding the externalId.
    pub(super) outcome: Option<Result<String, StoreError>>,
}

/// Meta and ratelimits one statement takes at most, past its first row: a run of large metas is bound to
/// several statements, a part at a time, not to one whole.
const STATEMENT_BYTES: usize = 1024 * 1024;

/// Inserts `inserts` in the group's transaction, as few statements as [`STATEMENT_BYTES`] allows, and notes
/// each one's outcome. An error is the database's own, which fails the group.
pub(super) async fn insert_identities(
    connection: &mut SqliteConnection,
    mut inserts: &mut [&mut IdentityInsert],
) -> Result<(), StoreError> {
    while !inserts.is_empty() {
        let (statement, rest) = inserts.split_at_mut(rows_of_one_statement(inserts));
        insert_rows(connection, statement).await?;
        note_collisions(connection, statement).await?;
        inserts = rest;
    }
    Ok(())
}

/// Whether one statement inserts all of `inserts`.
pub(super) fn fit_one_statement(inserts: &[&mut IdentityInsert]) -> bool {
    rows_of_one_statement(inserts) == inserts.len()
}

/// Inserts `inserts`, which [fit one statement](fit_one_statement), in no transaction but the statement's
/// own, and notes each one's outcome. An error is the statement's: nothing was stored. The statement
/// commits once sent, so it is not bounded by `deadline`, and the creates it stored are noted as soon as
/// it returns; finding who holds the externalIds that collided is bounded, and a failure there fails only
/// the creates that collided. `false` when that failure may have left the connection unusable.
pub(super) async fn insert_identities_alone(
    connection: &mut SqliteConnection,
    inserts: &mut [&mut IdentityInsert],
    deadline: tokio::time::Instant,
) -> Result<bool, StoreError> {
    insert_rows(connection, inserts).await?;
    let noted = within_deadline_at(deadline, note_collisions(connection, inserts)).await;
    if let Err(error) = &noted {
        tracing::warn!(%error, "could not tell creates that collided whom they collided with");
        for insert in inserts.iter_mut().filter(|insert| insert.outcome.is_none()) {
            insert.outcome = Some(Err(error.same_kind()));
        }
    }
    Ok(noted.is_ok())
}

/// How many of `inserts`, from the first, one statement takes.
fn rows_of_one_statement(inserts: &[&mut IdentityInsert]) -> usize {
    let mut bytes = 0;
    let after_the_first = inserts.iter().skip(1).take(STATEMENT_ROWS - 1).take_while(|insert| {
        bytes += insert.meta.len() + insert.ratelimits.len();
        bytes <= STATEMENT_BYTES
    });
    inserts.len().min(1) + after_the_first.count()
}

/// Inserts, with one statement, those of `inserts` whose externalId is free, each under a new id, and
/// notes each one stored as such. The others are left without an outcome.
async fn insert_rows(connection: &mut SqliteConnection, inserts: &mut [&mut IdentityInsert]) -> Result<(), StoreError> {
    let ids: Vec<String> = inserts.iter().map(|_| new_id("id")).collect();
    let created_at = now_ms();
    let (rows, statement) = INSERT_IDENTITIES
        .iter()
        .find(|(rows, _)| *rows >= inserts.len())
        .ok_or_else(|| StoreError::InvalidData(format!("{} creates in one statement", inserts.len())))?;
    let mut insert = sqlx::query_scalar(statement);
    for (row, id) in inserts.iter().zip(&ids) {
        insert = insert
            .bind(id.as_str())
            .bind(row.workspace.as_str())
            .bind(row.external_id.as_str())
            .bind(row.meta.as_str())
            .bind(row.ratelimits.as_str())
            .bind(created_at);
    }
    // Padding: rows of NULLs, which the statement skips.
    for _ in inserts.len()..*rows {
        let none = None::<&str>;
        insert = insert.bind(none).bind(none).bind(none).bind(none).bind(none).bind(None::<i64>);
    }
    let stored: HashSet<String> = insert.fetch_all(&mut *connection).await?.into_iter().collect();
    for (insert, id) in inserts.iter_mut().zip(ids) {
        if stored.contains(&id) {
            insert.outcome = Some(Ok(id));
        }
    }
    Ok(())
}

/// Notes, for each of `inserts` that was not stored, the conflict with the live identity holding its
/// externalId. On an error, those noted before it keep their outcomes.
async fn note_collisions(
    connection: &mut SqliteConnection,
    inserts: &mut [&mut IdentityInsert],
) -> Result<(), StoreError> {
    for insert in inserts.iter_mut().filter(|insert| insert.outcome.is_none()) {
        insert.outcome = Some(match SqliteStore::holder_in(connection, &insert.workspace, &insert.external_id).await {
            Ok(existing_id) => Err(StoreError::Conflict { existing_id }),
            Err(contended @ StoreError::Contended(_)) => Err(contended),
            Err(error) => return Err(error),
        });
    }
    Ok(())
}

/// A list page as one row: its rows as one text of length-prefixed fields ([`listed_rows`] reads it). sqlx
/// hands each row from SQLite's thread to the caller's on its own, and those handoffs were most of a page's
/// cost: as one row, pages of 100 went from about 4,000 to 6,500 a second. The page was first one JSON
/// array, which SQLite spent a sixth of a page's profile building (meta escaped into a string, ratelimits
/// parsed and printed again) and serde another twentieth reading; framed by lengths, meta and ratelimits
/// are the text they are stored as, checked once as they are read (`stored_meta`, `stored_ratelimits`).
/// A row is `payloadBytes,` then `length,text` for its id and externalId, then either the same for meta
/// and ratelimits or `-` when they did not come with the row. The aggregate names no order, since asking
/// for one made SQLite sort again what it had read in order; the shared code puts the page in order.
const LIST_IDENTITIES: &str = concat!(
    "SELECT group_concat(i.payload_bytes || ',' || octet_length(i.id) || ',' || i.id \
       || octet_length(i.external_id) || ',' || i.external_id \
       || COALESCE(octet_length(i.meta) || ',' || i.meta || octet_length(i.ratelimits) || ',' || i.ratelimits, '-'), \
       '') FROM ",
    identity_page!()
);

/// The rows of a page [`LIST_IDENTITIES`] framed.
fn listed_rows(mut page: &str) -> Result<Vec<ListedRow>, StoreError> {
    let damaged = || StoreError::InvalidData("list page: a row's framing is damaged".to_owned());
    fn number(page: &mut &str) -> Option<i64> {
        let (digits, rest) = page.split_once(',')?;
        *page = rest;
        digits.parse().ok()
    }
    fn text(page: &mut &str) -> Option<String> {
        let length = usize::try_from(number(page)?).ok()?;
        let text = page.get(..length)?;
        *page = &page[length..];
        Some(text.to_owned())
    }
    let mut rows = Vec::new();
    while !page.is_empty() {
        let payload_bytes = number(&mut page).ok_or_else(damaged)?;
        let id = text(&mut page).ok_or_else(damaged)?;
        let external_id = text(&mut page).ok_or_else(damaged)?;
        let payload = match page.strip_prefix('-') {
            Some(rest) => {
                page = rest;
                None
            }
            None => {
                let meta = text(&mut page).ok_or_else(damaged)?;
                let ratelimits = text(&mut page).ok_or_else(damaged)?;
                Some((meta, stored_ratelimits(&id, ratelimits)?))
            }
        };
        rows.push(ListedRow { id, external_id, payload, payload_bytes });
    }
    Ok(rows)
}

impl IdentityBackend for SqliteStore {
    async fn create_identity(&self, workspace: &WorkspaceId, new: &NewIdentity) -> Result<String, StoreError> {
        if new.id.is_none() {
            let insert = IdentityInsert {
                workspace: workspace.clone(),
                external_id: new.external_id.clone(),
                meta: to_json(&new.meta)?,
                ratelimits: ratelimits_json(&replace_ratelimits(&[], &new.ratelimits))?,
                outcome: None,
            };
            return self.writes.insert_identity(insert).await;
        }
        // An import's, keeping its id, which may collide with another identity's.
        let (workspace, new) = (workspace.clone(), new.clone());
        self.writes
            .run_one_statement(move |connection| {
                Box::pin(async move {
                    // The shared code applies what the create changed once it answers. A conflict is a
                    // refusal to the group, which goes on without it.
                    match Self::create_identity_in(connection, &workspace, &new).await?.outcome {
                        Creation::Created { id } => Ok(id),
                        Creation::AlreadyExists { existing_id } => Err(StoreError::Conflict { existing_id }),
                    }
                })
            })
            .await
    }

    /// One statement in the next group commit, as every write is.
    async fn update_identity_meta(
        &self,
        workspace: &WorkspaceId,
        identity: &str,
        meta: &Meta,
    ) -> Result<Written<IdentityUpdate>, StoreError> {
        let changes = IdentityChanges { meta: Some(meta.clone()), ratelimits: None, external_id: None };
        let (workspace, identity) = (workspace.clone(), identity.to_owned());
        self.writes
            .run_one_statement(move |connection| {
                Box::pin(async move { Self::update_identity_in(connection, &workspace, &identity, &changes).await })
            })
            .await
    }

    /// One statement in the next group commit, as every write is.
    async fn upsert_identity_without_ratelimits(
        &self,
        workspace: &WorkspaceId,
        upsert: &IdentityUpsert,
    ) -> Result<Written<(Identity, bool)>, StoreError> {
        let (workspace, upsert) = (workspace.clone(), upsert.clone());
        self.writes
            .run_one_statement(move |connection| {
                Box::pin(async move { Self::upsert_identity_in(connection, &workspace, &upsert).await })
            })
            .await
    }

    async fn list_identities(
        &self,
        workspace: &WorkspaceId,
        query: &IdentityPageQuery,
        before: Option<&str>,
    ) -> Result<Vec<ListedRow>, StoreError> {
        let page: Option<String> = within_deadline(async {
            let mut reader = self.reader.acquire().await?;
            let page = sqlx::query_scalar(LIST_IDENTITIES)
                .bind(workspace.as_str())
                .bind(query.cursor.as_deref())
                .bind(query.search_pattern.as_deref())
                .bind(query.limit.saturating_add(1))
                .bind(before)
                .bind(INLINE_PAYLOAD_BYTES)
                .fetch_one(&mut *reader)
                .await?;
            reader.finished();
            Ok(page)
        })
        .await?;
        page.as_deref().map_or(Ok(Vec::new()), listed_rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn store_with_a_workspace(dir: &tempfile::TempDir) -> SqliteStore {
        let store =
            SqliteStore::open(&format!("sqlite://{}", dir.path().join("sigil.db").display())).await.expect("open");
        sqlx::query("INSERT INTO workspaces (id, name, created_at) VALUES ('ws_1', 'one', 0)")
            .execute(&store.writer)
            .await
            .expect("workspace");
        store
    }

    fn insert(external_id: &str) -> IdentityInsert {
        IdentityInsert {
            workspace: WorkspaceId::from_stored("ws_1".to_owned()),
            external_id: external_id.to_owned(),
            meta: "{}".to_owned(),
            ratelimits: "[]".to_owned(),
            outcome: None,
        }
    }

    /// Every lookup by externalId seeks the live-externalId index by the folded externalId. Where a condition
    /// stops matching the index, SQLite's planner takes another index or none, and the lookup reads every
    /// identity of the workspace or of the table, with no error to show for it.
    #[tokio::test]
    async fn lookups_by_external_id_seek_the_live_external_id_index() {
        use crate::store::identities::{EXTERNAL_ID_IN_OTHER_CASE, GET_IDENTITY, LIVE_IDENTITY_ID_BY_EXTERNAL_ID};
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_a_workspace(&dir).await;
        let mut reader = store.reader.acquire().await.expect("reader");
        for (lookup, seek) in [
            (GET_IDENTITY, "(external_id_folded=? AND external_id=?)"),
            (LIVE_IDENTITY_ID_BY_EXTERNAL_ID, "(external_id_folded=? AND external_id=?)"),
            (EXTERNAL_ID_IN_OTHER_CASE, "(external_id_folded=?)"),
        ] {
            let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {lookup}"))
                .bind("ws_1")
                .bind("User_1")
                .fetch_all(&mut *reader)
                .await
                .expect("plan");
            let steps: Vec<&str> = plan.iter().map(|(_, _, _, step)| step.as_str()).collect();
            let sought = format!("SEARCH identities USING INDEX identities_live_external_id {seek}");
            assert!(steps.contains(&sought.as_str()), "{lookup}: {steps:?}");
            assert!(!steps.iter().any(|step| step.starts_with("SCAN identities")), "{lookup}: {steps:?}");
        }
        reader.finished();
        store.close_pools().await;
    }

    /// A run of large metas is split across statements ([`STATEMENT_BYTES`]); every row is stored, in order.
    #[tokio::test]
    async fn large_metas_are_inserted_a_part_at_a_time_every_one_in_order() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_a_workspace(&dir).await;
        let meta = format!("{{\"pad\":\"{}\"}}", "x".repeat(600 * 1024));
        let mut inserts: Vec<IdentityInsert> =
            (0..5).map(|n| IdentityInsert { meta: meta.clone(), ..insert(&format!("large_{n}")) }).collect();
        let mut connection = store.writer.acquire().await.expect("connection");
        insert_identities(&mut connection, &mut inserts.iter_mut().collect::<Vec<_>>()).await.expect("inserted");
        drop(connection);
        let ids: Vec<String> =
            inserts.into_iter().map(|insert| insert.outcome.expect("ran").expect("stored")).collect();
        let stored: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT id, external_id, length(meta) FROM identities ORDER BY id")
                .fetch_all(&mut *store.reader.acquire().await.expect("reader"))
                .await
                .expect("stored");
        let expected: Vec<_> =
            ids.into_iter().enumerate().map(|(n, id)| (id, format!("large_{n}"), meta.len() as i64)).collect();
        assert_eq!(stored, expected);
        store.close_pools().await;
    }

    /// One statement's rows go in in their order, padded or full: of the creates of one externalId the first
    /// wins and the later ones name it. (SQLite runs a VALUES list in order without promising to; this fails
    /// if a version of it stops.)
    #[tokio::test]
    async fn a_statements_rows_go_in_in_their_order_the_first_of_each_external_id_winning() {
        for rows in [200, STATEMENT_ROWS] {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = store_with_a_workspace(&dir).await;
            let external_id = |n: usize| format!("e_{}", (n * 7) % 50);
            let mut inserts: Vec<IdentityInsert> = (0..rows).map(|n| insert(&external_id(n))).collect();
            let mut connection = store.writer.acquire().await.expect("connection");
            let deadline = tokio::time::Instant::now() + crate::store::DATABASE_DEADLINE;
            let mut all: Vec<&mut IdentityInsert> = inserts.iter_mut().collect();
            assert!(fit_one_statement(&all));
            insert_identities_alone(&mut connection, &mut all, deadline).await.expect("inserted");
            drop((all, connection));
            let mut winners = std::collections::HashMap::new();
            for (n, insert) in inserts.iter().enumerate() {
                match insert.outcome.as_ref().expect("decided") {
                    Ok(id) => assert!(winners.insert(external_id(n), id.clone()).is_none(), "row {n} won twice"),
                    Err(StoreError::Conflict { existing_id }) => {
                        assert_eq!(Some(existing_id), winners.get(&external_id(n)))
                    }
                    Err(error) => panic!("row {n}: {error}"),
                }
            }
            let stored: Vec<String> = sqlx::query_scalar("SELECT external_id FROM identities ORDER BY rowid")
                .fetch_all(&mut *store.reader.acquire().await.expect("reader"))
                .await
                .expect("stored");
            let mut firsts: Vec<String> = (0..rows).map(external_id).collect();
            let mut seen = HashSet::new();
            firsts.retain(|external_id| seen.insert(external_id.clone()));
            assert_eq!(stored, firsts, "{rows} rows");
            store.close_pools().await;
        }
    }

    /// A group of creates alone is one statement with no transaction around it; the creates that collided,
    /// with each other or with an identity stored before, name the holder.
    #[tokio::test]
    async fn creates_alone_in_a_group_name_whom_they_collided_with() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_a_workspace(&dir).await;
        let held = store.writes.insert_identity(insert("held")).await.expect("held");
        let (first, duplicate, of_held) = tokio::join!(
            store.writes.insert_identity(insert("a")),
            store.writes.insert_identity(insert("a")),
            store.writes.insert_identity(insert("held")),
        );
        let first = first.expect("a");
        assert!(matches!(duplicate, Err(StoreError::Conflict { existing_id }) if existing_id == first));
        assert!(matches!(of_held, Err(StoreError::Conflict { existing_id }) if existing_id == held));
        let mut connection = store.writer.acquire().await.expect("connection");
        let mut inserts = [insert("b"), insert("c")];
        let kept = insert_identities_alone(
            &mut connection,
            &mut inserts.iter_mut().collect::<Vec<_>>(),
            tokio::time::Instant::now() + crate::store::DATABASE_DEADLINE,
        )
        .await
        .expect("inserted");
        assert!(kept, "the connection is fine");
        assert!(inserts.iter().all(|insert| matches!(insert.outcome, Some(Ok(_)))));
        drop(connection);
        // Seen from another connection: committed, no transaction left open.
        let committed: i64 = sqlx::query_scalar("SELECT count(*) FROM identities WHERE external_id IN ('b', 'c')")
            .fetch_one(&mut *store.reader.acquire().await.expect("reader"))
            .await
            .expect("count");
        assert_eq!(committed, 2);
        store.close_pools().await;
    }

    /// Writes queued in one poll land in one group, in their order: the creates around a delete are two
    /// statements, and the second create finds the externalId the delete freed.
    #[tokio::test]
    async fn creates_in_one_group_keep_their_place_around_other_writes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_a_workspace(&dir).await;
        let held = store.writes.insert_identity(insert("held")).await.expect("held");
        let delete = store.writes.run(|connection| {
            Box::pin(async move {
                sqlx::query("UPDATE identities SET deleted_at = 1 WHERE external_id = 'x'").execute(connection).await?;
                Ok(())
            })
        });
        let (first, second, duplicate, deleted, again, of_held) = tokio::join!(
            store.writes.insert_identity(insert("x")),
            store.writes.insert_identity(insert("y")),
            store.writes.insert_identity(insert("y")),
            delete,
            store.writes.insert_identity(insert("x")),
            store.writes.insert_identity(insert("held")),
        );
        let (first, second, again) = (first.expect("x"), second.expect("y"), again.expect("x again"));
        assert!(matches!(duplicate, Err(StoreError::Conflict { existing_id }) if existing_id == second));
        deleted.expect("delete");
        assert!(matches!(of_held, Err(StoreError::Conflict { existing_id }) if existing_id == held));
        assert!(held < first && first < second && second < again, "ids in the order stored");
        let live: Vec<(String, String)> =
            sqlx::query_as("SELECT id, external_id FROM identities WHERE deleted_at IS NULL ORDER BY id")
                .fetch_all(&mut *store.reader.acquire().await.expect("reader"))
                .await
                .expect("live");
        assert_eq!(live, [(held, "held".to_owned()), (second, "y".to_owned()), (again, "x".to_owned())]);
        store.close_pools().await;
    }

    /// The page's framing holds whatever an externalId or a meta holds (commas, digits, a lone `-`,
    /// multi-byte characters), and a row whose payload was too large to come with it comes without it.
    #[tokio::test]
    async fn a_list_page_reads_back_every_row_as_stored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = store_with_a_workspace(&dir).await;
        let large = format!("{{\"pad\":\"{}\"}}", "x".repeat(INLINE_PAYLOAD_BYTES as usize));
        let rows = [
            ("12,3", r#"{"a,b":"1,2-"}"#.to_owned()),
            ("-", "{}".to_owned()),
            ("ünï,cødé 🦀", r#"{"ß":"🦀,"}"#.to_owned()),
            ("large", large.clone()),
        ];
        let mut ids = Vec::new();
        for (external_id, meta) in &rows {
            let stored = IdentityInsert { meta: meta.clone(), ..insert(external_id) };
            ids.push(store.writes.insert_identity(stored).await.expect("stored"));
        }
        let workspace = WorkspaceId::from_stored("ws_1".to_owned());
        let query = IdentityPageQuery::new(None, None, 100, 1000).expect("a page");
        let mut listed = IdentityBackend::list_identities(&store, &workspace, &query, None).await.expect("listed");
        listed.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(listed.len(), rows.len());
        for ((row, (external_id, meta)), id) in listed.iter().zip(&rows).zip(&ids) {
            assert_eq!((&row.id, row.external_id.as_str()), (id, *external_id));
            assert_eq!(row.payload_bytes, (meta.len() + "[]".len()) as i64);
            match &row.payload {
                Some((listed_meta, ratelimits)) => {
                    assert_eq!((listed_meta, ratelimits.get()), (meta, "[]"));
                }
                None => assert_eq!(meta, &large, "only the large payload stays behind"),
            }
        }
        store.close_pools().await;
    }

    #[tokio::test]
    async fn a_list_page_seeks_to_its_cursor_through_the_workspace_index() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store =
            SqliteStore::open(&format!("sqlite://{}", dir.path().join("sigil.db").display())).await.expect("open");
        let plan: Vec<(i64, i64, i64, String)> = sqlx::query_as(&format!("EXPLAIN QUERY PLAN {LIST_IDENTITIES}"))
            .bind("ws_1")
            .bind(Some("id_5"))
            .bind(None::<&str>)
            .bind(101_i64)
            .bind(None::<&str>)
            .bind(INLINE_PAYLOAD_BYTES)
            .fetch_all(&mut *store.reader.acquire().await.expect("reader"))
            .await
            .expect("explain");
        let plan: Vec<&str> = plan.iter().map(|(_, _, _, detail)| detail.as_str()).collect();
        assert!(
            plan.iter().any(|step| step.contains("identities_live_by_workspace (workspace_id=? AND id>?)")),
            "{plan:#?}"
        );
        store.close_pools().await;
    }
}

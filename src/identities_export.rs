//! `sigil identities export`: a workspace's live identities on stdout as JSON Lines, in id order, each as
//! getIdentity shows it (its id and its ratelimits' ids included, so that an import keeps them).

use std::io::Write;

use anyhow::Context;

use crate::config::ExportArgs;
use crate::domain::identity::IdentityPageQuery;

/// Identities read per page; a page also stops at `PAGE_BYTES` of meta and ratelimits.
const PAGE: i64 = 100;

pub async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let store = crate::store::open(&args.database.url).await?;
    let workspace =
        store.find_workspace(&args.workspace).await?.with_context(|| format!("no workspace {:?}", args.workspace))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut cursor = None;
    loop {
        let query = IdentityPageQuery::new(cursor, None, PAGE, i64::MAX).context("a page query")?;
        let page = store.list_identities(&workspace, &query).await?;
        for identity in &page.identities {
            serde_json::to_writer(&mut out, identity)?;
            out.write_all(b"\n")?;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    out.flush()?;
    store.close().await;
    Ok(())
}

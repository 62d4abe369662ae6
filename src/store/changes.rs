//! What a committed write changed, as far as what nodes keep in memory is concerned, and how a change
//! travels between PostgreSQL nodes as a notice.
//!
//! Every write returns its changes ([`Written`]); the backend that ran it applies them after the commit and
//! before the answer (`Backend::write`), on this node at once and on the others through one bus
//! (`postgres/changes.rs`). A notice is versioned JSON naming its kind, `{"v":1,"kind":"identity",…}`: a
//! node ignores a kind it does not know (a newer node's notice of something this node keeps nothing of)
//! rather than voiding everything; a version it does not know, or a notice it cannot read at all, voids
//! everything, since it may say that anything changed.

use serde::{Deserialize, Serialize};

use crate::domain::workspace::WorkspaceId;

/// What a write changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// A new identity: a read on this node by a string that was someone's externalId now finds it first.
    /// Other nodes hold nothing it makes untrue (the id is fresh, the externalId was no live identity's),
    /// so it is not announced.
    IdentityCreated {
        workspace: String,
        id: String,
        #[serde(rename = "externalId")]
        external_id: String,
    },
    /// An identity updated or deleted: what any node read of it, by id or externalId, is void.
    Identity {
        workspace: String,
        id: String,
        #[serde(rename = "externalId")]
        external_id: String,
    },
    /// An API key updated or deleted: what any node read of it is void. Named by its hash, the name it is
    /// verified by.
    Key { workspace: String, hash: String },
    /// A root key revoked (or its permissions changed): what any node read of it is void.
    RootKey { hash: String },
    /// Everything any node read is void: a write whose outcome is unknown, or changes that were dropped.
    Everything,
}

impl Change {
    pub fn identity_created(workspace: &WorkspaceId, id: &str, external_id: &str) -> Self {
        Self::IdentityCreated {
            workspace: workspace.as_str().to_owned(),
            id: id.to_owned(),
            external_id: external_id.to_owned(),
        }
    }

    pub fn identity(workspace: &WorkspaceId, id: &str, external_id: &str) -> Self {
        Self::Identity {
            workspace: workspace.as_str().to_owned(),
            id: id.to_owned(),
            external_id: external_id.to_owned(),
        }
    }

    pub fn key(workspace: &WorkspaceId, hash: &str) -> Self {
        Self::Key { workspace: workspace.as_str().to_owned(), hash: hash.to_owned() }
    }

    /// Whether other nodes need to hear of it.
    pub fn is_announced(&self) -> bool {
        !matches!(self, Self::IdentityCreated { .. })
    }
}

/// A write's outcome and what it changed.
pub struct Written<T> {
    pub outcome: T,
    pub changes: Vec<Change>,
}

impl<T> Written<T> {
    pub fn new(outcome: T, changes: Vec<Change>) -> Self {
        Self { outcome, changes }
    }

    /// An outcome that changed nothing kept in memory.
    pub fn unchanged(outcome: T) -> Self {
        Self { outcome, changes: Vec::new() }
    }

    /// The same changes, with the outcome made into another.
    pub fn map<U>(self, outcome: impl FnOnce(T) -> U) -> Written<U> {
        Written { outcome: outcome(self.outcome), changes: self.changes }
    }
}

/// The version of the notices this node writes.
const VERSION: u32 = 1;

#[derive(Serialize)]
struct OutgoingNotice<'a> {
    v: u32,
    #[serde(flatten)]
    change: &'a Change,
}

/// A change as a notice for other nodes.
pub fn to_notice(change: &Change) -> String {
    serde_json::to_string(&OutgoingNotice { v: VERSION, change }).expect("changes always serialize")
}

/// What a notice from another node says.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    Change(Change),
    /// A kind this node does not know, from a newer node: nothing this node keeps depends on it.
    Unknown,
    /// Not a notice at all: since nobody can say what it meant, everything read is void.
    Unreadable,
}

pub fn from_notice(payload: &str) -> Notice {
    #[derive(Deserialize)]
    struct Envelope {
        v: u32,
        kind: String,
    }
    if let Ok(Envelope { v, kind }) = serde_json::from_str::<Envelope>(payload) {
        if v != VERSION {
            // A newer format may say anything has changed: nothing read can be trusted.
            return Notice::Change(Change::Everything);
        }
        return match serde_json::from_str::<Change>(payload) {
            Ok(change) => Notice::Change(change),
            Err(_) if !KNOWN_KINDS.contains(&kind.as_str()) => Notice::Unknown,
            Err(_) => Notice::Unreadable,
        };
    }
    // What nodes before version 1 send: a `[workspace, id, externalId]` array for a changed identity, and
    // `*` for everything.
    if payload == "*" {
        return Notice::Change(Change::Everything);
    }
    match serde_json::from_str::<(String, String, String)>(payload) {
        Ok((workspace, id, external_id)) => Notice::Change(Change::Identity { workspace, id, external_id }),
        Err(_) => Notice::Unreadable,
    }
}

const KNOWN_KINDS: [&str; 5] = ["identity_created", "identity", "key", "root_key", "everything"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_change_survives_its_notice() {
        let workspace = WorkspaceId::from_stored("ws_1".into());
        for change in [
            Change::identity(&workspace, "id_1", "user_1"),
            Change::identity_created(&workspace, "id_1", "user_1"),
            Change::key(&workspace, "def"),
            Change::RootKey { hash: "abc".into() },
            Change::Everything,
        ] {
            assert_eq!(from_notice(&to_notice(&change)), Notice::Change(change));
        }
        assert_eq!(
            to_notice(&Change::identity(&workspace, "id_1", "user_1")),
            r#"{"v":1,"kind":"identity","workspace":"ws_1","id":"id_1","externalId":"user_1"}"#
        );
    }

    #[test]
    fn a_newer_kind_is_ignored_and_a_newer_version_or_garbage_voids_everything() {
        assert_eq!(from_notice(r#"{"v":2,"kind":"identity"}"#), Notice::Change(Change::Everything));
        assert_eq!(from_notice(r#"{"v":1,"kind":"permission","id":"perm_1"}"#), Notice::Unknown);
        assert_eq!(from_notice(r#"{"v":1,"kind":"identity","id":"id_1"}"#), Notice::Unreadable);
        assert_eq!(from_notice("not json"), Notice::Unreadable);
    }

    #[test]
    fn an_older_node_s_notices_are_still_understood() {
        assert_eq!(
            from_notice(r#"["ws_1","id_1","user_1"]"#),
            Notice::Change(Change::Identity {
                workspace: "ws_1".into(),
                id: "id_1".into(),
                external_id: "user_1".into()
            })
        );
        assert_eq!(from_notice("*"), Notice::Change(Change::Everything));
    }
}

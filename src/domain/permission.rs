//! Authorization as Unkey does it: a root key holds permission strings, and an operation passes when any
//! one of them grants any of the operation's accepted permissions.
//!
//! Two forms are accepted. Legacy tuples (`identity.*.read_identity`) match as exact, case-sensitive
//! strings; `*` in them is a literal. URNs (`unkey:v1:<workspace>:projects/*/identities/*#read_identity`)
//! match by segments: in a granted URN `*` covers one path segment, `**` any depth, and the action `*` is
//! allowed only on `**` (`unkey:v1:<workspace>:**#*` is the all-permissions grant).

use crate::domain::workspace::WorkspaceId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentityAction {
    Create,
    Read,
    Update,
    Delete,
}

impl IdentityAction {
    fn slug(self) -> &'static str {
        match self {
            Self::Create => "create_identity",
            Self::Read => "read_identity",
            Self::Update => "update_identity",
            Self::Delete => "delete_identity",
        }
    }
}

/// An authenticated caller: the workspace its root key belongs to and what the key may do there.
#[derive(Debug, Clone)]
pub struct RootKey {
    pub workspace: WorkspaceId,
    pub permissions: Vec<String>,
}

/// The permissions of which the key held none; the 403 detail lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPermission {
    pub any_of: Vec<String>,
}

impl RootKey {
    /// `identity_id` names the identity acted on; only reads accept a grant for that one identity.
    pub fn authorize(&self, action: IdentityAction, identity_id: Option<&str>) -> Result<(), MissingPermission> {
        // Checked without building the accepted strings: a list page checks every one of its identities.
        let per_identity = identity_id.filter(|_| action == IdentityAction::Read);
        let wanted_urn = Urn { workspace: self.workspace.as_str(), path: IDENTITIES_PATH, action: action.slug() };
        let granted = self.permissions.iter().any(|held| match Urn::parse(held) {
            Some(held) => held.covers(&wanted_urn),
            None => legacy_tuple_grants(held, action, per_identity),
        });
        if granted {
            Ok(())
        } else {
            Err(MissingPermission { any_of: accepted_permissions(&self.workspace, action, per_identity) })
        }
    }

    pub fn may(&self, action: IdentityAction, identity_id: Option<&str>) -> bool {
        self.authorize(action, identity_id).is_ok()
    }
}

/// The permission that grants everything in a workspace: what a root key created without `--permission` holds.
pub fn all_permissions(workspace: &WorkspaceId) -> String {
    format!("unkey:v1:{}:**#*", workspace.as_str())
}

/// The resource path every identity permission URN names.
const IDENTITIES_PATH: &str = "projects/*/identities/*";

/// Whether `held` is exactly `identity.*.<action>`, or `identity.<id>.<action>` for the one identity read.
fn legacy_tuple_grants(held: &str, action: IdentityAction, per_identity: Option<&str>) -> bool {
    let Some(target) =
        held.strip_prefix("identity.").and_then(|rest| rest.strip_suffix(action.slug())?.strip_suffix('.'))
    else {
        return false;
    };
    target == "*" || per_identity == Some(target)
}

/// What the 403 detail lists, in the order `authorize` accepts them.
fn accepted_permissions(workspace: &WorkspaceId, action: IdentityAction, per_identity: Option<&str>) -> Vec<String> {
    let slug = action.slug();
    let mut accepted = vec![format!("identity.*.{slug}")];
    if let Some(id) = per_identity {
        accepted.push(format!("identity.{id}.{slug}"));
    }
    accepted.push(format!("unkey:v1:{}:{IDENTITIES_PATH}#{slug}", workspace.as_str()));
    accepted
}

struct Urn<'a> {
    workspace: &'a str,
    path: &'a str,
    action: &'a str,
}

impl<'a> Urn<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let rest = text.strip_prefix("unkey:v1:")?;
        let (workspace, resource) = rest.split_once(':')?;
        let (path, action) = resource.split_once('#')?;
        Some(Self { workspace, path, action })
    }

    fn covers(&self, wanted: &Urn) -> bool {
        let action_covered = self.action == wanted.action || (self.action == "*" && self.path == "**");
        self.workspace == wanted.workspace && action_covered && path_covers(self.path, wanted.path)
    }
}

fn path_covers(held: &str, wanted: &str) -> bool {
    let mut wanted_segments = wanted.split('/');
    for held_segment in held.split('/') {
        if held_segment == "**" {
            return true;
        }
        match wanted_segments.next() {
            Some(segment) if held_segment == "*" || held_segment == segment => {}
            _ => return false,
        }
    }
    wanted_segments.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(permissions: &[&str]) -> RootKey {
        RootKey {
            workspace: WorkspaceId::from_stored("ws_1".into()),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn legacy_tuples_match_exactly_and_case_sensitively() {
        assert!(key(&["identity.*.create_identity"]).may(IdentityAction::Create, None));
        assert!(!key(&["IDENTITY.*.CREATE_IDENTITY"]).may(IdentityAction::Create, None));
        assert!(!key(&["identity.create_identity"]).may(IdentityAction::Create, None));
        assert!(!key(&["identity.*.read_identity"]).may(IdentityAction::Delete, None));
        assert!(!key(&["key.*.delete_key"]).may(IdentityAction::Delete, None));
        assert!(!key(&[]).may(IdentityAction::Read, None));
        for near_miss in ["identity.*.read_identityx", "identity.*.xread_identity", "identity.*x.read_identity"] {
            assert!(!key(&[near_miss]).may(IdentityAction::Read, Some("x")), "{near_miss}");
        }
    }

    #[test]
    fn a_per_identity_grant_allows_reading_that_identity_only() {
        let reader = key(&["identity.id_a.read_identity"]);
        assert!(reader.may(IdentityAction::Read, Some("id_a")));
        assert!(!reader.may(IdentityAction::Read, Some("id_b")));
        assert!(!key(&["identity.id_a.update_identity"]).may(IdentityAction::Update, Some("id_a")));
    }

    #[test]
    fn urn_grants_cover_by_segment_within_their_workspace() {
        assert!(key(&["unkey:v1:ws_1:projects/*/identities/*#read_identity"]).may(IdentityAction::Read, None));
        assert!(key(&["unkey:v1:ws_1:projects/**#delete_identity"]).may(IdentityAction::Delete, None));
        assert!(key(&["unkey:v1:ws_1:**#*"]).may(IdentityAction::Update, None));
        assert!(!key(&["unkey:v1:ws_2:**#*"]).may(IdentityAction::Update, None));
        assert!(!key(&["unkey:v1:ws_1:projects/*/identities/*#*"]).may(IdentityAction::Read, None));
        assert!(!key(&["unkey:v1:ws_1:projects/p1/identities/*#read_identity"]).may(IdentityAction::Read, None));
        assert!(!key(&["unkey:v1:ws_1:projects/*#read_identity"]).may(IdentityAction::Read, None));
    }

    #[test]
    fn the_all_permissions_grant_allows_every_action() {
        let workspace = WorkspaceId::from_stored("ws_1".into());
        let admin = RootKey { permissions: vec![all_permissions(&workspace)], workspace };
        for action in [IdentityAction::Create, IdentityAction::Read, IdentityAction::Update, IdentityAction::Delete] {
            assert!(admin.may(action, None));
        }
    }

    #[test]
    fn a_denial_lists_every_accepted_permission() {
        let denial = key(&[]).authorize(IdentityAction::Read, Some("id_a")).unwrap_err();
        assert_eq!(
            denial.any_of,
            [
                "identity.*.read_identity",
                "identity.id_a.read_identity",
                "unkey:v1:ws_1:projects/*/identities/*#read_identity"
            ]
        );
    }
}

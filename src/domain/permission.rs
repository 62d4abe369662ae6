//! Authorization as Unkey does it: a root key holds grants, and an operation passes when any one of them
//! covers what the operation needs: an action on a type of resource, perhaps on one resource.
//!
//! Grants come in Unkey's two forms, and are compiled once, when a root key is loaded:
//! - tuples, `<resource type>.<resource id or *>.<action>` (`identity.*.read_identity`,
//!   `api.api_123.verify_key`), which match exactly and case-sensitively; `*` in them is a literal that
//!   an operation accepts as "any resource of the type";
//! - URNs, `unkey:v1:<workspace id>:<path>#<action>` (`unkey:v1:ws_1:projects/*/identities/*#read_identity`),
//!   which match by path segment: `*` covers one segment, `**` any depth, and the action `*` is allowed only
//!   on `**` (`unkey:v1:<workspace id>:**#*` is the all-permissions grant).
//!
//! Minting is strict ([`Grant::parse_for`]): a grant that could never match is refused with the fix, rather
//! than stored to grant nothing.

use crate::domain::identity::Identity;
use crate::domain::workspace::WorkspaceId;

/// A type of resource that permissions name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Identity,
    Api,
    Ratelimit,
}

impl Resource {
    const ALL: [Self; 3] = [Self::Identity, Self::Api, Self::Ratelimit];

    /// The first part of a tuple grant.
    fn tuple_name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::Api => "api",
            Self::Ratelimit => "ratelimit",
        }
    }

    /// The actions Unkey's root keys can be granted on this type (from Unkey's permission catalogue).
    fn actions(self) -> &'static [&'static str] {
        match self {
            Self::Identity => &["create_identity", "read_identity", "update_identity", "delete_identity"],
            Self::Api => &[
                "create_api",
                "read_api",
                "update_api",
                "delete_api",
                "create_key",
                "read_key",
                "update_key",
                "delete_key",
                "encrypt_key",
                "decrypt_key",
                "verify_key",
                "read_analytics",
            ],
            Self::Ratelimit => &[
                "limit",
                "create_namespace",
                "read_namespace",
                "update_namespace",
                "delete_namespace",
                "set_override",
                "read_override",
                "delete_override",
            ],
        }
    }

    fn from_tuple_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|resource| resource.tuple_name() == name)
    }
}

/// What the identities routes do.
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

/// What the apis routes, and the key routes so far, do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiAction {
    CreateApi,
    ReadApi,
    DeleteApi,
    CreateKey,
    ReadKey,
    UpdateKey,
    DeleteKey,
    VerifyKey,
}

impl ApiAction {
    fn slug(self) -> &'static str {
        match self {
            Self::CreateApi => "create_api",
            Self::ReadApi => "read_api",
            Self::DeleteApi => "delete_api",
            Self::CreateKey => "create_key",
            Self::ReadKey => "read_key",
            Self::UpdateKey => "update_key",
            Self::DeleteKey => "delete_key",
            Self::VerifyKey => "verify_key",
        }
    }

    /// The URN path naming every resource the action is on. Sigil has no keyspaces of their own (an API is
    /// its keyspace), so a URN naming one keyspace grants nothing here; `*` and `**` do.
    fn urn_path(self) -> &'static str {
        match self {
            Self::CreateApi | Self::ReadApi | Self::DeleteApi => "apis/*",
            Self::CreateKey => "keyspaces/*",
            Self::ReadKey | Self::UpdateKey | Self::DeleteKey | Self::VerifyKey => "keyspaces/*/keys/*",
        }
    }
}

/// What an operation needs: any one grant covering it will do.
#[derive(Debug, Clone, Copy)]
pub struct Needed<'a> {
    resource: Resource,
    /// The one resource acted on, when a grant for that resource alone is accepted.
    id: Option<&'a str>,
    action: &'static str,
    /// The URN path that names every resource of the type.
    urn_path: &'static str,
}

impl<'a> Needed<'a> {
    /// `identity_id` names the identity acted on; as in Unkey, only reads accept a grant for that one
    /// identity (`identity.<id>.read_identity`).
    pub fn identity(action: IdentityAction, identity_id: Option<&'a str>) -> Self {
        Self {
            resource: Resource::Identity,
            id: identity_id.filter(|_| action == IdentityAction::Read),
            action: action.slug(),
            urn_path: "projects/*/identities/*",
        }
    }

    /// `api_id` names the API acted on; every action but creating an API accepts a grant for that one API
    /// (`api.<apiId>.read_api`), as in Unkey.
    pub fn api(action: ApiAction, api_id: Option<&'a str>) -> Self {
        Self {
            resource: Resource::Api,
            id: api_id.filter(|_| action != ApiAction::CreateApi),
            action: action.slug(),
            urn_path: action.urn_path(),
        }
    }

    /// The grants that would do, in the order they are checked, for the 403's detail.
    fn accepted(&self, workspace: &WorkspaceId) -> Vec<String> {
        let (resource, action) = (self.resource.tuple_name(), self.action);
        let mut accepted = vec![format!("{resource}.*.{action}")];
        if let Some(id) = self.id {
            accepted.push(format!("{resource}.{id}.{action}"));
        }
        accepted.push(format!("unkey:v1:{}:{}#{action}", workspace.as_str(), self.urn_path));
        accepted
    }
}

/// One grant of a root key, compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Tuple { resource: Resource, target: TupleTarget, action: String },
    Urn { workspace: String, path: Vec<PathSegment>, action: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TupleTarget {
    /// `*`: every resource of the type.
    Every,
    One(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    /// `**`: this and every deeper segment.
    AnyDepth,
    /// `*`: any one segment.
    Any,
    Exactly(String),
}

/// Why a grant cannot be minted, and what to mint instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidGrant {
    pub grant: String,
    pub reason: String,
    pub fix: String,
}

impl std::fmt::Display for InvalidGrant {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{:?} {}. {}", self.grant, self.reason, self.fix)
    }
}

impl std::error::Error for InvalidGrant {}

impl Grant {
    /// Reads a grant as stored. Anything that is not a tuple of a known resource type nor a URN is `None`:
    /// it grants nothing.
    pub fn compile(text: &str) -> Option<Self> {
        if let Some(rest) = text.strip_prefix("unkey:v1:") {
            let (workspace, resource) = rest.split_once(':')?;
            let (path, action) = resource.split_once('#')?;
            let path = path
                .split('/')
                .map(|segment| match segment {
                    "**" => PathSegment::AnyDepth,
                    "*" => PathSegment::Any,
                    exact => PathSegment::Exactly(exact.to_owned()),
                })
                .collect();
            return Some(Self::Urn { workspace: workspace.to_owned(), path, action: action.to_owned() });
        }
        let (resource, rest) = text.split_once('.')?;
        let (target, action) = rest.rsplit_once('.')?;
        let target = if target == "*" { TupleTarget::Every } else { TupleTarget::One(target.to_owned()) };
        Some(Self::Tuple { resource: Resource::from_tuple_name(resource)?, target, action: action.to_owned() })
    }

    /// Reads a grant to be minted for a key of `workspace`, refusing one that could never match.
    pub fn parse_for(text: &str, workspace: &WorkspaceId, workspace_name: &str) -> Result<Self, InvalidGrant> {
        let invalid =
            |reason: &str, fix: String| InvalidGrant { grant: text.to_owned(), reason: reason.to_owned(), fix };
        let tuple_forms = || {
            let types: Vec<&str> = Resource::ALL.iter().map(|resource| resource.tuple_name()).collect();
            format!(
                "Write a tuple <type>.<id or *>.<action>, with type one of {}, such as identity.*.read_identity, \
                 or a URN unkey:v1:{}:<path>#<action>.",
                types.join(", "),
                workspace.as_str()
            )
        };
        match Self::compile(text) {
            None if text.starts_with("unkey:") => {
                Err(invalid("is no URN", format!("Write unkey:v1:{}:<path>#<action>.", workspace.as_str())))
            }
            None => Err(invalid("is neither a tuple of a known resource type nor a URN", tuple_forms())),
            Some(Self::Urn { workspace: named, path, action }) => {
                let corrected = || text.replacen(&format!(":{named}:"), &format!(":{}:", workspace.as_str()), 1);
                if named == workspace_name && named != workspace.as_str() {
                    return Err(invalid(
                        "names the workspace by its name, where a URN names it by its id",
                        format!("Write {}.", corrected()),
                    ));
                }
                if named != workspace.as_str() {
                    return Err(invalid(
                        "names another workspace than the key's, so it would grant nothing",
                        format!("Write {}.", corrected()),
                    ));
                }
                if path.iter().any(|segment| matches!(segment, PathSegment::Exactly(exact) if exact.is_empty()))
                    || action.is_empty()
                {
                    return Err(invalid("has an empty path segment or action", tuple_forms()));
                }
                if action == "*" && path != [PathSegment::AnyDepth] {
                    return Err(invalid(
                        "uses the action * on a path other than **, which grants nothing",
                        format!("Write unkey:v1:{}:**#* for every permission, or name the action.", workspace.as_str()),
                    ));
                }
                Ok(Self::Urn { workspace: named, path, action })
            }
            Some(Self::Tuple { resource, target, action }) => {
                if !resource.actions().contains(&action.as_str()) {
                    return Err(invalid(
                        &format!("names no action of {}", resource.tuple_name()),
                        format!("Use one of: {}.", resource.actions().join(", ")),
                    ));
                }
                if target == TupleTarget::One(String::new()) {
                    return Err(invalid("names no resource", tuple_forms()));
                }
                Ok(Self::Tuple { resource, target, action })
            }
        }
    }

    fn covers(&self, needed: &Needed, workspace: &WorkspaceId) -> bool {
        match self {
            Self::Tuple { resource, target, action } => {
                *resource == needed.resource
                    && action == needed.action
                    && match target {
                        TupleTarget::Every => true,
                        TupleTarget::One(id) => needed.id == Some(id.as_str()),
                    }
            }
            Self::Urn { workspace: named, path, action } => {
                let action_covered = action == needed.action || (action == "*" && path[..] == [PathSegment::AnyDepth]);
                named == workspace.as_str() && action_covered && path_covers(path, needed.urn_path)
            }
        }
    }
}

fn path_covers(held: &[PathSegment], wanted: &str) -> bool {
    let mut wanted_segments = wanted.split('/');
    for held_segment in held {
        let segment = match held_segment {
            PathSegment::AnyDepth => return true,
            PathSegment::Any => wanted_segments.next().is_some(),
            PathSegment::Exactly(exact) => wanted_segments.next() == Some(exact.as_str()),
        };
        if !segment {
            return false;
        }
    }
    wanted_segments.next().is_none()
}

/// An authenticated caller: the workspace its root key belongs to and what the key may do there.
#[derive(Debug, Clone)]
pub struct RootKey {
    /// The key's id (`key_…`), which logs name: never the key or its hash.
    pub id: String,
    pub workspace: WorkspaceId,
    grants: Vec<Grant>,
}

/// Why a key is not shown an identity it looked up.
#[derive(Debug)]
pub enum Unreadable {
    NotFound,
    Forbidden(MissingPermission),
}

/// The permissions of which the key held none; the 403 detail lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingPermission {
    pub any_of: Vec<String>,
}

impl RootKey {
    /// A key holding `stored` grants, compiled once here; a stored grant that cannot be read grants nothing.
    pub fn new(id: String, workspace: WorkspaceId, stored: &[String]) -> Self {
        let grants = stored.iter().filter_map(|text| Grant::compile(text)).collect();
        Self { id, workspace, grants }
    }

    pub fn authorize(&self, needed: Needed) -> Result<(), MissingPermission> {
        if self.may(needed) { Ok(()) } else { Err(self.missing(needed)) }
    }

    pub fn may(&self, needed: Needed) -> bool {
        self.grants.iter().any(|grant| grant.covers(&needed, &self.workspace))
    }

    /// Whether some grant covers `needed` for at least one resource: for every one, or for one by its id.
    pub fn may_for_some(&self, needed: Needed) -> bool {
        self.may(needed)
            || self.grants.iter().any(|grant| {
                matches!(grant, Grant::Tuple { resource, target: TupleTarget::One(_), action }
                    if *resource == needed.resource && action == needed.action)
            })
    }

    /// The resources that grants name one by one (`identity.<id>.read_identity`) for `needed`.
    pub fn granted_ids(&self, needed: Needed) -> impl Iterator<Item = &str> {
        self.grants.iter().filter_map(move |grant| match grant {
            Grant::Tuple { resource, target: TupleTarget::One(id), action }
                if *resource == needed.resource && action == needed.action =>
            {
                Some(id.as_str())
            }
            _ => None,
        })
    }

    /// What a lookup of identity `asked` (an id or an externalId) that `found` tells this key. Whether an
    /// identity exists is told only to a key that may read every identity, or that one: any other key is
    /// refused whether it exists or not (`NotFound` only for a missing identity it was granted by id, or to
    /// a key that reads everything). A refusal names the per-identity grant only when `asked` was the
    /// identity's id, so that it never tells the id behind an externalId.
    pub fn reads(&self, asked: &str, found: Option<Identity>) -> Result<Identity, Unreadable> {
        let read = Needed::identity(IdentityAction::Read, None);
        let readable =
            found.as_ref().is_some_and(|identity| self.may(Needed::identity(IdentityAction::Read, Some(&identity.id))));
        if readable || (found.is_none() && self.may(read)) {
            return found.ok_or(Unreadable::NotFound);
        }
        if found.is_none() && self.granted_ids(read).any(|granted| granted == asked) {
            return Err(Unreadable::NotFound);
        }
        let named_by_id = found.filter(|identity| identity.id == asked).map(|identity| identity.id);
        Err(Unreadable::Forbidden(self.missing(Needed::identity(IdentityAction::Read, named_by_id.as_deref()))))
    }

    /// The denial of `needed`, listing the grants that would do.
    pub fn missing(&self, needed: Needed) -> MissingPermission {
        MissingPermission { any_of: needed.accepted(&self.workspace) }
    }
}

/// The permission that grants everything in a workspace: what a root key created without `--permission` holds.
pub fn all_permissions(workspace: &WorkspaceId) -> String {
    format!("unkey:v1:{}:**#*", workspace.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(permissions: &[&str]) -> RootKey {
        let permissions: Vec<String> = permissions.iter().map(|p| p.to_string()).collect();
        RootKey::new("key_1".into(), WorkspaceId::from_stored("ws_1".into()), &permissions)
    }

    fn identity(action: IdentityAction) -> Needed<'static> {
        Needed::identity(action, None)
    }

    #[test]
    fn tuples_match_exactly_and_case_sensitively() {
        assert!(key(&["identity.*.create_identity"]).may(identity(IdentityAction::Create)));
        assert!(!key(&["IDENTITY.*.CREATE_IDENTITY"]).may(identity(IdentityAction::Create)));
        assert!(!key(&["identity.create_identity"]).may(identity(IdentityAction::Create)));
        assert!(!key(&["identity.*.read_identity"]).may(identity(IdentityAction::Delete)));
        assert!(!key(&["key.*.delete_key"]).may(identity(IdentityAction::Delete)));
        assert!(!key(&["api.*.delete_identity"]).may(identity(IdentityAction::Delete)));
        assert!(!key(&[]).may(identity(IdentityAction::Read)));
        for near_miss in ["identity.*.read_identityx", "identity.*.xread_identity", "identity.*x.read_identity"] {
            assert!(!key(&[near_miss]).may(Needed::identity(IdentityAction::Read, Some("x"))), "{near_miss}");
        }
    }

    #[test]
    fn a_per_identity_grant_allows_reading_that_identity_only() {
        let reader = key(&["identity.id_a.read_identity"]);
        assert!(reader.may(Needed::identity(IdentityAction::Read, Some("id_a"))));
        assert!(!reader.may(Needed::identity(IdentityAction::Read, Some("id_b"))));
        assert!(!reader.may(identity(IdentityAction::Read)));
        let updater = key(&["identity.id_a.update_identity"]);
        assert!(!updater.may(Needed::identity(IdentityAction::Update, Some("id_a"))));
    }

    #[test]
    fn urn_grants_cover_by_segment_within_their_workspace() {
        assert!(key(&["unkey:v1:ws_1:projects/*/identities/*#read_identity"]).may(identity(IdentityAction::Read)));
        assert!(key(&["unkey:v1:ws_1:projects/**#delete_identity"]).may(identity(IdentityAction::Delete)));
        assert!(key(&["unkey:v1:ws_1:**#*"]).may(identity(IdentityAction::Update)));
        assert!(!key(&["unkey:v1:ws_2:**#*"]).may(identity(IdentityAction::Update)));
        assert!(!key(&["unkey:v1:ws_1:projects/*/identities/*#*"]).may(identity(IdentityAction::Read)));
        assert!(!key(&["unkey:v1:ws_1:projects/p1/identities/*#read_identity"]).may(identity(IdentityAction::Read)));
        assert!(!key(&["unkey:v1:ws_1:projects/*#read_identity"]).may(identity(IdentityAction::Read)));
        assert!(!key(&["unkey:v1:ws_1:projects/*/identities/*/x#read_identity"]).may(identity(IdentityAction::Read)));
    }

    #[test]
    fn the_all_permissions_grant_allows_every_action() {
        let workspace = WorkspaceId::from_stored("ws_1".into());
        let admin = RootKey::new("key_1".into(), workspace.clone(), &[all_permissions(&workspace)]);
        for action in [IdentityAction::Create, IdentityAction::Read, IdentityAction::Update, IdentityAction::Delete] {
            assert!(admin.may(identity(action)));
        }
    }

    #[test]
    fn a_denial_lists_every_accepted_permission() {
        let denial = key(&[]).authorize(Needed::identity(IdentityAction::Read, Some("id_a"))).unwrap_err();
        assert_eq!(
            denial.any_of,
            [
                "identity.*.read_identity",
                "identity.id_a.read_identity",
                "unkey:v1:ws_1:projects/*/identities/*#read_identity"
            ]
        );
    }

    #[test]
    fn a_grant_for_one_identity_is_a_grant_for_some() {
        let read = || Needed::identity(IdentityAction::Read, None);
        assert!(key(&["identity.id_a.read_identity"]).may_for_some(read()));
        assert!(key(&["identity.*.read_identity"]).may_for_some(read()));
        assert!(!key(&["identity.id_a.update_identity"]).may_for_some(read()));
        assert!(!key(&["api.id_a.read_identity"]).may_for_some(read()));
        assert!(!key(&[]).may_for_some(read()));
    }

    #[test]
    fn minting_accepts_what_can_match() {
        let workspace = WorkspaceId::from_stored("ws_1".into());
        for good in [
            "identity.*.create_identity",
            "identity.id_a.read_identity",
            "api.*.verify_key",
            "api.api_1.create_key",
            "ratelimit.*.limit",
            "unkey:v1:ws_1:**#*",
            "unkey:v1:ws_1:projects/*/identities/*#read_identity",
        ] {
            assert!(Grant::parse_for(good, &workspace, "acme").is_ok(), "{good}");
        }
    }

    #[test]
    fn minting_refuses_what_would_grant_nothing_and_names_the_fix() {
        let workspace = WorkspaceId::from_stored("ws_1".into());
        let refused = |grant: &str| Grant::parse_for(grant, &workspace, "acme").unwrap_err();
        let by_name = refused("unkey:v1:acme:**#*");
        assert!(by_name.reason.contains("by its name"), "{by_name}");
        assert!(by_name.fix.contains("unkey:v1:ws_1:**#*"), "{by_name}");
        assert!(refused("unkey:v1:ws_2:**#*").fix.contains("unkey:v1:ws_1:**#*"));
        assert!(refused("unkey:v1:ws_1:projects/*#*").reason.contains("action *"));
        assert!(refused("unkey:v1:ws_1").reason.contains("no URN"));
        assert!(refused("identity.*.read").fix.contains("read_identity"));
        assert!(refused("identities.*.read_identity").fix.contains("identity, api, ratelimit"));
        assert!(refused("identity..read_identity").reason.contains("no resource"));
        assert!(refused("read_identity").reason.contains("neither"));
    }
}

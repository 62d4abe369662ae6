//! The tenant boundary: every stored identity belongs to exactly one workspace.

/// A workspace's id. Only the store creates one (from a row), so a handler can only name the workspace
/// of the root key that authenticated it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub fn from_stored(id: String) -> Self {
        Self(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

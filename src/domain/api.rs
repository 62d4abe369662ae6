//! APIs: the namespaces that own keys.

use serde::Serialize;

/// An API as getApi shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Api {
    pub id: String,
    pub name: String,
}

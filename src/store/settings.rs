//! Settings: facts about the deployment that every node must agree on, the SQL both databases run for
//! them, and its one implementation ([`impl_settings!`]).

use async_trait::async_trait;

use crate::store::StoreError;

#[async_trait]
pub trait Settings: Send + Sync {
    /// The stored value of setting `name`, storing `value` first when it has none: the first node to start
    /// sets it, and every later one reads what it set.
    async fn setting_or(&self, name: &str, value: &str) -> Result<String, StoreError>;
}

pub(super) const INSERT_SETTING: &str =
    "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING";
pub(super) const SETTING: &str = "SELECT value FROM settings WHERE name = $1";

/// Implements [`Settings`] for a [`Backend`](super::backend::Backend).
macro_rules! impl_settings {
    ($store:ty) => {
        const _: () = {
            use $crate::store::StoreError;
            use $crate::store::backend::Backend;
            use $crate::store::settings::*;

            #[async_trait::async_trait]
            impl Settings for $store {
                async fn setting_or(&self, name: &str, value: &str) -> Result<String, StoreError> {
                    let (name, value) = (name.to_owned(), value.to_owned());
                    self.on_writer(|connection| {
                        Box::pin(async move {
                            sqlx::query(INSERT_SETTING).bind(&name).bind(&value).execute(&mut *connection).await?;
                            Ok(sqlx::query_scalar(SETTING).bind(&name).fetch_one(connection).await?)
                        })
                    })
                    .await
                }
            }
        };
    };
}
pub(super) use impl_settings;

//! Verifications spending one key's credits at once, combined into one write. Every spend is a durable
//! write holding the key's row, so one key's spends run one after another, each waiting for its commit:
//! 32 concurrent verifications of a key with credits ran at 6,745 a second on SQLite and 1,519 on
//! PostgreSQL (`cargo bench --bench sigil`). Spends that arrive while one of the key's writes runs wait
//! for it, then all go in the next write, taken in the order they came; each is answered once that write
//! commits, so none is answered before it is durable and, the row being held, none overspends.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::domain::workspace::WorkspaceId;
use crate::store::{CreditsSpent, Store, StoreError};

type Answer = oneshot::Sender<Result<CreditsSpent, StoreError>>;
/// A key: its workspace and id.
type KeyOf = (WorkspaceId, String);
type Waiting = HashMap<KeyOf, Vec<(i64, Answer)>>;

/// The spends waiting for each key (workspace, key id) whose writes are running.
#[derive(Default)]
pub struct CreditSpends {
    waiting: Mutex<Waiting>,
}

impl CreditSpends {
    /// Takes `cost` from the key's credits, in the next write of the key's spends.
    pub async fn spend(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        workspace: &WorkspaceId,
        key_id: &str,
        cost: i64,
    ) -> Result<CreditsSpent, StoreError> {
        let (answer, answered) = oneshot::channel();
        let key = (workspace.clone(), key_id.to_owned());
        let first = match self.waiting().entry(key.clone()) {
            Entry::Occupied(mut running) => {
                running.get_mut().push((cost, answer));
                false
            }
            Entry::Vacant(idle) => {
                idle.insert(vec![(cost, answer)]);
                true
            }
        };
        if first {
            tokio::spawn(Arc::clone(self).write_until_none_wait(Arc::clone(store), key));
        }
        answered.await.unwrap_or_else(|_| Err(StoreError::InvalidData("the spend's write failed".to_owned())))
    }

    /// Writes the key's waiting spends, as many times as spends keep coming while a write runs. The key's
    /// entry stays, emptied, while a write runs, so that spends arriving meanwhile wait for the next.
    async fn write_until_none_wait(self: Arc<Self>, store: Arc<dyn Store>, key: KeyOf) {
        loop {
            let spends = {
                let mut waiting = self.waiting();
                let spends = waiting.get_mut(&key).map(std::mem::take).unwrap_or_default();
                if spends.is_empty() {
                    waiting.remove(&key);
                    return;
                }
                spends
            };
            let costs: Vec<i64> = spends.iter().map(|(cost, _)| *cost).collect();
            // In a task of its own, so that a panic fails these spends, not the key's next ones.
            let (store, workspace, key_id) = (Arc::clone(&store), key.0.clone(), key.1.clone());
            let written = tokio::spawn(async move { store.spend_credits(&workspace, &key_id, &costs).await }).await;
            let written = written.unwrap_or_else(|panic| Err(StoreError::InvalidData(format!("panicked: {panic}"))));
            match written {
                Ok(outcomes) => {
                    for ((_, answer), outcome) in spends.into_iter().zip(outcomes) {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    for (_, answer) in spends {
                        let _ = answer.send(Err(error.for_another_waiter()));
                    }
                }
            }
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

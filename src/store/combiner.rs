//! Concurrent writes to one row, combined into one write. A write that holds a hot row (a key's credits, an
//! identity's ratelimit counter) makes every other write to it wait for its end, so writes to one row ran
//! one after another, each paying a transaction of its own. Those that arrive while one runs now wait for
//! it and then go together in the next, in the order they came; each is answered once that write has
//! ended, so none is answered before it is stored, and the row being held, the outcomes are those of
//! running them one by one.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::store::StoreError;

type Answer<Out> = oneshot::Sender<Result<Out, StoreError>>;
type Waiting<Row, In, Out> = HashMap<Row, Vec<(In, Answer<Out>)>>;
/// Writes a row's inputs, in order, as one write: one outcome per input.
pub type CombinedWrite<Row, In, Out> =
    Box<dyn Fn(Row, Vec<In>) -> Pin<Box<dyn Future<Output = Result<Vec<Out>, StoreError>> + Send>> + Send + Sync>;

pub struct Combiner<Row, In, Out> {
    write: CombinedWrite<Row, In, Out>,
    /// The inputs waiting for each row whose write runs; the row's entry stays, emptied, while it runs.
    waiting: Mutex<Waiting<Row, In, Out>>,
}

impl<Row, In, Out> Combiner<Row, In, Out>
where
    Row: Hash + Eq + Clone + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    pub fn new(write: CombinedWrite<Row, In, Out>) -> Arc<Self> {
        Arc::new(Self { write, waiting: Mutex::default() })
    }

    /// `input`'s outcome, from the next write of `row`.
    pub async fn write(self: &Arc<Self>, row: Row, input: In) -> Result<Out, StoreError> {
        let (answer, answered) = oneshot::channel();
        let first = match self.waiting().entry(row.clone()) {
            Entry::Occupied(mut running) => {
                running.get_mut().push((input, answer));
                false
            }
            Entry::Vacant(idle) => {
                idle.insert(vec![(input, answer)]);
                true
            }
        };
        if first {
            tokio::spawn(Arc::clone(self).write_until_none_wait(row));
        }
        answered.await.unwrap_or_else(|_| Err(StoreError::InvalidData("the combined write failed".to_owned())))
    }

    /// Writes the row's waiting inputs, as many times as inputs keep coming while a write runs.
    async fn write_until_none_wait(self: Arc<Self>, row: Row) {
        loop {
            let waiting = {
                let mut waiting = self.waiting();
                let inputs = waiting.get_mut(&row).map(std::mem::take).unwrap_or_default();
                if inputs.is_empty() {
                    waiting.remove(&row);
                    return;
                }
                inputs
            };
            let (inputs, answers): (Vec<In>, Vec<Answer<Out>>) = waiting.into_iter().unzip();
            // In a task of its own, so that a panic fails these inputs, not the row's next ones.
            let write = (self.write)(row.clone(), inputs);
            let written = tokio::spawn(write).await;
            match written.unwrap_or_else(|panic| Err(StoreError::InvalidData(format!("panicked: {panic}")))) {
                Ok(outcomes) => {
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    for answer in answers {
                        let _ = answer.send(Err(error.for_another_waiter()));
                    }
                }
            }
        }
    }

    fn waiting(&self) -> MutexGuard<'_, Waiting<Row, In, Out>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

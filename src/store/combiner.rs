//! Concurrent writes to one row, combined into one write. A write that holds a hot row (a key's credits, an
//! identity's ratelimit counter) makes every other write to it wait for its end, so writes to one row ran
//! one after another, each paying a transaction of its own. Those that arrive while one runs now wait for
//! it and then go together in the next, in the order they came; each is answered once that write has
//! ended, so none is answered before it is stored, and the row being held, the outcomes are those of
//! running them one by one. One failure fails every write of its group, as a group commit does, and a
//! request waits for the write running when it came before its own, up to twice the database deadline.
//!
//! An input whose request was given up before its write began is left out of it (a verification nobody
//! hears of spends nothing), and at most [`MOST_WAITING`] wait for one row: past that, a request is
//! refused with 503 at once, so that a stalled database cannot make the queue grow without bound.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::oneshot;

use crate::store::StoreError;

/// Inputs waiting for one row's next write, at most: as many requests as a node runs at once by default
/// (`--max-in-flight`).
pub const MOST_WAITING: usize = 1024;

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
            Entry::Occupied(running) if running.get().len() >= MOST_WAITING => {
                return Err(StoreError::Contended("too many writes are waiting for this key or counter"));
            }
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
            let writing = Writing { combiner: Arc::clone(self), row, finished: false };
            tokio::spawn(writing.until_none_wait());
        }
        // The row's writing task ended without answering: only a runtime shutting down does that.
        answered.await.unwrap_or_else(|_| Err(StoreError::Unavailable(sqlx::Error::WorkerCrashed)))
    }
}

impl<Row: Hash + Eq, In, Out> Combiner<Row, In, Out> {
    fn waiting(&self) -> MutexGuard<'_, Waiting<Row, In, Out>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The task writing one row's inputs. Should it end before it has written them all (a runtime shutting
/// down), the row's entry goes with it, so that the next input starts a task of its own instead of waiting
/// for one that is gone.
struct Writing<Row: Hash + Eq, In, Out> {
    combiner: Arc<Combiner<Row, In, Out>>,
    row: Row,
    finished: bool,
}

impl<Row: Hash + Eq, In, Out> Drop for Writing<Row, In, Out> {
    fn drop(&mut self) {
        if !self.finished {
            self.combiner.waiting().remove(&self.row);
        }
    }
}

impl<Row, In, Out> Writing<Row, In, Out>
where
    Row: Hash + Eq + Clone + Send + 'static,
    In: Send + 'static,
    Out: Send + 'static,
{
    /// Writes the row's waiting inputs, as many times as inputs keep coming while a write runs.
    async fn until_none_wait(mut self) {
        loop {
            let waiting = {
                let mut waiting = self.combiner.waiting();
                let mut inputs = waiting.get_mut(&self.row).map(std::mem::take).unwrap_or_default();
                inputs.retain(|(_, answer)| !answer.is_closed());
                if inputs.is_empty() {
                    // Under the lock: an input arriving next finds no entry and starts a task of its own.
                    waiting.remove(&self.row);
                }
                inputs
            };
            if waiting.is_empty() {
                self.finished = true;
                return;
            }
            let (inputs, answers): (Vec<In>, Vec<Answer<Out>>) = waiting.into_iter().unzip();
            // In a task of its own, so that a panic fails these inputs, not the row's next ones.
            let write = (self.combiner.write)(self.row.clone(), inputs);
            let written = tokio::spawn(write).await;
            match written.unwrap_or_else(|panic| Err(StoreError::InvalidData(format!("panicked: {panic}")))) {
                Ok(outcomes) => {
                    for (answer, outcome) in answers.into_iter().zip(outcomes) {
                        let _ = answer.send(Ok(outcome));
                    }
                }
                Err(error) => {
                    for answer in answers {
                        let _ = answer.send(Err(error.same_kind()));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::Semaphore;

    use super::*;

    /// A combiner whose writes record their inputs and wait, each, for a permit of `gate`; each input's
    /// outcome is itself doubled.
    type Written = Arc<Mutex<Vec<Vec<u32>>>>;

    fn recording(gate: &Arc<Semaphore>) -> (Arc<Combiner<&'static str, u32, u32>>, Written) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let (gate, log) = (Arc::clone(gate), Arc::clone(&written));
        let combiner = Combiner::new(Box::new(move |_, inputs: Vec<u32>| {
            let (gate, log) = (Arc::clone(&gate), Arc::clone(&log));
            Box::pin(async move {
                gate.acquire().await.expect("open").forget();
                log.lock().unwrap().push(inputs.clone());
                Ok(inputs.iter().map(|input| input * 2).collect())
            })
        }));
        (combiner, written)
    }

    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    type Outcome = tokio::task::JoinHandle<Result<u32, StoreError>>;

    fn spawn_write(combiner: &Arc<Combiner<&'static str, u32, u32>>, row: &'static str, input: u32) -> Outcome {
        let combiner = Arc::clone(combiner);
        tokio::spawn(async move { combiner.write(row, input).await })
    }

    #[tokio::test]
    async fn inputs_arriving_while_a_write_runs_go_together_in_the_next_in_order() {
        let gate = Arc::new(Semaphore::new(0));
        let (combiner, written) = recording(&gate);
        let first = spawn_write(&combiner, "key", 1);
        settle().await;
        let mut later = Vec::new();
        for input in [2, 3, 4] {
            later.push(spawn_write(&combiner, "key", input));
            settle().await;
        }
        gate.add_permits(2);
        assert_eq!(first.await.unwrap().unwrap(), 2);
        for (task, expected) in later.into_iter().zip([4, 6, 8]) {
            assert_eq!(task.await.unwrap().unwrap(), expected);
        }
        assert_eq!(*written.lock().unwrap(), [vec![1], vec![2, 3, 4]]);
        settle().await;
        assert!(combiner.waiting().is_empty(), "an idle row keeps no entry");
    }

    #[tokio::test]
    async fn an_input_given_up_before_its_write_began_is_left_out() {
        let gate = Arc::new(Semaphore::new(0));
        let (combiner, written) = recording(&gate);
        let first = spawn_write(&combiner, "key", 1);
        settle().await;
        let given_up = spawn_write(&combiner, "key", 2);
        settle().await;
        given_up.abort();
        settle().await;
        gate.add_permits(2);
        first.await.unwrap().unwrap();
        settle().await;
        assert_eq!(*written.lock().unwrap(), [vec![1]]);
        assert_eq!(combiner.write("key", 5).await.unwrap(), 10, "the row takes inputs again");
    }

    #[tokio::test]
    async fn past_the_most_waiting_a_row_refuses_at_once_and_other_rows_do_not() {
        let gate = Arc::new(Semaphore::new(0));
        let (combiner, _) = recording(&gate);
        let mut accepted = vec![spawn_write(&combiner, "key", 0)];
        settle().await;
        for input in 1..=u32::try_from(MOST_WAITING).unwrap() {
            accepted.push(spawn_write(&combiner, "key", input));
        }
        settle().await;
        let refused = tokio::time::timeout(Duration::from_secs(1), combiner.write("key", 7)).await.expect("at once");
        assert!(matches!(refused, Err(StoreError::Contended(_))), "{refused:?}");
        accepted.push(spawn_write(&combiner, "other", 7));
        gate.add_permits(3);
        for task in accepted {
            task.await.unwrap().unwrap();
        }
    }
}

//! Where every log line goes: a buffer that a thread of its own writes to stderr every few milliseconds, so
//! that a slow reader of the log (a pipe, a busy disk) never holds up a request, and a busy server pays for
//! one write and one wake-up per batch, not per line.
//!
//! Hand-written rather than tracing-appender's `NonBlocking`: that one hands each line through a channel
//! to a thread that sleeps whenever it has caught up, so at tens of thousands of lines a second nearly
//! every line woke it. That wake-up (a futex call and two context switches) was most of the 6 µs of
//! kernel time that the request's log line added to a cached read.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line waits at most before it is written.
const WRITE_EVERY: Duration = Duration::from_millis(10);
/// Waiting lines past this many bytes are written at once.
const WRITE_AT_BYTES: usize = 256 * 1024;
/// No line is dropped: past this many bytes waiting (a reader that stopped reading), logging waits.
const MAX_WAITING_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct LogWriter {
    shared: Arc<Shared>,
}

struct Shared {
    waiting: Mutex<Waiting>,
    /// The writing thread waits on it for lines (or `closing`).
    gathered: Condvar,
    /// Loggers wait on it for room.
    drained: Condvar,
}

#[derive(Default)]
struct Waiting {
    bytes: Vec<u8>,
    loggers_waiting_for_room: usize,
    closing: bool,
}

/// Writes what is still waiting, and stops the thread, when dropped (at the end of `main`).
pub struct LogWriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    /// Starts the thread that writes to `out`.
    pub fn start(out: impl Write + Send + 'static) -> std::io::Result<(Self, LogWriterGuard)> {
        let shared = Arc::new(Shared {
            waiting: Mutex::new(Waiting::default()),
            gathered: Condvar::new(),
            drained: Condvar::new(),
        });
        let thread = std::thread::Builder::new().name("sigil-log".to_owned()).spawn({
            let shared = shared.clone();
            move || write_batches(&shared, out)
        })?;
        Ok((Self { shared: shared.clone() }, LogWriterGuard { shared, thread: Some(thread) }))
    }

    /// Queues one whole line (or several): a call's bytes are never split from each other.
    pub fn write_line(&self, line: &[u8]) {
        let mut waiting = self.shared.lock();
        while !waiting.bytes.is_empty() && waiting.bytes.len() + line.len() > MAX_WAITING_BYTES {
            waiting.loggers_waiting_for_room += 1;
            waiting = self.shared.drained.wait(waiting).unwrap_or_else(PoisonError::into_inner);
            waiting.loggers_waiting_for_room -= 1;
        }
        let was_below = waiting.bytes.len() < WRITE_AT_BYTES;
        waiting.bytes.extend_from_slice(line);
        // Woken only when the batch fills: a notify is a system call even when nobody waits.
        if was_below && waiting.bytes.len() >= WRITE_AT_BYTES {
            self.shared.gathered.notify_one();
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Waiting> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn write_batches(shared: &Shared, mut out: impl Write) {
    let mut batch = Vec::new();
    loop {
        let closing = {
            let mut waiting = shared.lock();
            if waiting.bytes.len() < WRITE_AT_BYTES && !waiting.closing {
                waiting = shared.gathered.wait_timeout(waiting, WRITE_EVERY).unwrap_or_else(PoisonError::into_inner).0;
            }
            std::mem::swap(&mut waiting.bytes, &mut batch);
            if waiting.loggers_waiting_for_room > 0 {
                shared.drained.notify_all();
            }
            waiting.closing
        };
        // A failed write (a closed pipe, a full disk) loses its batch, as a failed line is lost anywhere;
        // logging goes on, and the next batch tries again.
        if !batch.is_empty() {
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            // A burst's buffer is not kept for good.
            batch.shrink_to(WRITE_AT_BYTES * 2);
        }
        if closing {
            return;
        }
    }
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.gathered.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Write for &LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.write_line(line);
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = &'a LogWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow reader the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_millis(5));
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_from_every_thread_is_written_whole_by_the_time_the_guard_drops() {
        let captured = Captured::default();
        let (writer, guard) = LogWriter::start(captured.clone()).expect("start");
        let threads: Vec<_> = (0..4)
            .map(|thread| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for n in 0..20_000 {
                        // 17 MB in all, faster than the slow reader takes them: the loggers wait for room.
                        let line = format!("{thread}:{n}:{}\n", "x".repeat(200));
                        writer.write_line(line.as_bytes());
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|thread| thread.join().expect("logger"));
        drop(guard);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).expect("UTF-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 80_000);
        for thread in 0..4 {
            let numbers: Vec<usize> = lines
                .iter()
                .filter_map(|line| line.strip_prefix(&format!("{thread}:")))
                .map(|rest| {
                    let (n, filler) = rest.split_once(':').expect("whole line");
                    assert_eq!(filler.len(), 200);
                    n.parse().expect("number")
                })
                .collect();
            assert_eq!(numbers, (0..20_000).collect::<Vec<_>>(), "thread {thread}'s lines in order");
        }
    }

    #[test]
    fn a_line_is_written_within_moments_without_more_lines_after_it() {
        let captured = Captured::default();
        let (writer, _guard) = LogWriter::start(captured.clone()).expect("start");
        writer.write_line(b"alone\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while captured.0.lock().unwrap().is_empty() {
            assert!(std::time::Instant::now() < deadline, "the line was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(captured.0.lock().unwrap().as_slice(), b"alone\n");
    }
}

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
/// No line is dropped while stderr takes writes: past this many bytes waiting (a reader that stopped
/// reading), logging waits.
const MAX_WAITING_BYTES: usize = 4 * 1024 * 1024;
/// How long the end of `main` waits for the last lines to be written: a reader that stopped reading must
/// not keep the process from exiting.
const LAST_WRITE_GRACE: Duration = Duration::from_secs(1);

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
    /// The thread wrote its last batch and ended.
    finished: bool,
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
        // Nothing writes a line logged after the end of `main`; it must not wait for room either.
        if waiting.closing {
            return;
        }
        while !waiting.bytes.is_empty() && waiting.bytes.len() + line.len() > MAX_WAITING_BYTES {
            waiting.loggers_waiting_for_room += 1;
            waiting = self.shared.drained.wait(waiting).unwrap_or_else(PoisonError::into_inner);
            waiting.loggers_waiting_for_room -= 1;
        }
        let (was_empty, was_below) = (waiting.bytes.is_empty(), waiting.bytes.len() < WRITE_AT_BYTES);
        waiting.bytes.extend_from_slice(line);
        // The thread is woken by a batch's first line (it sleeps while there is nothing to write) and when
        // the batch fills, not by every line: a notify is a system call even when nobody waits.
        if was_empty || (was_below && waiting.bytes.len() >= WRITE_AT_BYTES) {
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
            while waiting.bytes.is_empty() && !waiting.closing {
                waiting = shared.gathered.wait(waiting).unwrap_or_else(PoisonError::into_inner);
            }
            // The batch's first line waits a moment for others to join it.
            if waiting.bytes.len() < WRITE_AT_BYTES && !waiting.closing {
                waiting = shared.gathered.wait_timeout(waiting, WRITE_EVERY).unwrap_or_else(PoisonError::into_inner).0;
            }
            std::mem::swap(&mut waiting.bytes, &mut batch);
            if waiting.loggers_waiting_for_room > 0 {
                shared.drained.notify_all();
            }
            waiting.closing
        };
        if !batch.is_empty() {
            write_batch(&mut out, &batch);
            batch.clear();
            // A burst's buffer is not kept for good.
            batch.shrink_to(WRITE_AT_BYTES * 2);
        }
        if closing {
            shared.lock().finished = true;
            shared.drained.notify_all();
            return;
        }
    }
}

/// Writes a batch whole, waiting out a stderr that was left non-blocking. Any other failure (a closed pipe,
/// a full disk) loses what is left of the batch, as a failed line is lost anywhere, ending the last line
/// it cut so that the next batch starts a line of its own; the next batch tries again.
fn write_batch(out: &mut impl Write, batch: &[u8]) {
    let mut written = 0;
    while written < batch.len() {
        match out.write(&batch[written..]) {
            Ok(0) => break,
            Ok(more) => written += more,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1))
            }
            Err(_) => break,
        }
    }
    if written > 0 && written < batch.len() && batch[written - 1] != b'\n' {
        let _ = out.write_all(b"\n");
    }
    let _ = out.flush();
}

impl Drop for LogWriterGuard {
    fn drop(&mut self) {
        let mut waiting = self.shared.lock();
        waiting.closing = true;
        self.shared.gathered.notify_one();
        let (waiting, _) = self
            .shared
            .drained
            .wait_timeout_while(waiting, LAST_WRITE_GRACE, |waiting| !waiting.finished)
            .unwrap_or_else(PoisonError::into_inner);
        let finished = waiting.finished;
        drop(waiting);
        if let Some(thread) = self.thread.take().filter(|_| finished) {
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

    /// A reader that takes 5 bytes and then fails once.
    #[derive(Clone, Default)]
    struct FailingOnce(Arc<Mutex<(Vec<u8>, bool)>>);

    impl Write for FailingOnce {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let mut state = self.0.lock().unwrap();
            if state.1 {
                state.0.extend_from_slice(bytes);
                return Ok(bytes.len());
            }
            if state.0.len() < 5 {
                let taken = bytes.len().min(5 - state.0.len());
                state.0.extend_from_slice(&bytes[..taken]);
                return Ok(taken);
            }
            state.1 = true;
            Err(std::io::Error::other("disk full"))
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_batch_a_failed_write_cut_ends_its_line_and_the_next_starts_a_new_one() {
        let reader = FailingOnce::default();
        let (writer, guard) = LogWriter::start(reader.clone()).expect("start");
        writer.write_line(b"abcdefghij\n");
        std::thread::sleep(WRITE_EVERY * 5);
        writer.write_line(b"next\n");
        drop(guard);
        assert_eq!(reader.0.lock().unwrap().0, b"abcde\nnext\n");
    }

    /// A reader that never returns from a write.
    struct Stuck;

    impl Write for Stuck {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(0)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_that_stopped_keeps_the_end_of_main_waiting_a_moment_only() {
        let (writer, guard) = LogWriter::start(Stuck).expect("start");
        writer.write_line(b"never read\n");
        std::thread::sleep(WRITE_EVERY * 5);
        let started = std::time::Instant::now();
        drop(guard);
        assert!(started.elapsed() < LAST_WRITE_GRACE * 3, "waited {:?}", started.elapsed());
        writer.write_line(b"after the end: neither written nor waited for\n");
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

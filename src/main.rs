use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sigil::config::{Cli, Command, LogFormat, RootKeyCommand};
use tracing_subscriber::EnvFilter;

/// Rows are allocated on sqlx's SQLite threads and freed on tokio's; glibc's allocator spent about a
/// quarter of a list page's time in malloc and free, mimalloc much less (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _log_writer = init_logging(cli.log_format);
    let outcome = match cli.command {
        Command::Serve(args) => sigil::server::serve(args).await,
        Command::RootKey(RootKeyCommand::Create(args)) => sigil::server::create_root_key(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sigil: {error:#}");
            ExitCode::FAILURE
        }
    }
}

const LOG_LINES_WAITING: usize = 16_384;

/// Log lines go to stderr from a thread of their own, so a slow reader of the log (a pipe, a busy disk)
/// never holds up a request. None is dropped: past `LOG_LINES_WAITING` lines (a few MB), logging waits for
/// the reader. The returned guard writes out what is still waiting when `main` returns.
fn init_logging(format: LogFormat) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(LOG_LINES_WAITING)
        .thread_name("sigil-log")
        .finish(std::io::stderr());
    let filter = EnvFilter::try_from_env("SIGIL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(std::io::stderr().is_terminal());
    match format {
        LogFormat::Text => builder.init(),
        // The request's span (method, path, request id) once per line, not again in a list of all spans.
        LogFormat::Json => builder.json().with_span_list(false).init(),
    }
    guard
}

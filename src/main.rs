use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use sigil::config::{Cli, Command, IdentitiesCommand, LogFormat, RootKeyCommand};
use sigil::log_fields::InRequest;
use sigil::log_writer::{LogWriter, LogWriterGuard};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// Rows are allocated on sqlx's SQLite threads and freed on tokio's; glibc's allocator spent about a
/// quarter of a list page's time in malloc and free, mimalloc much less (see README, Performance).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Reads FAILPOINTS in a test build; nothing otherwise.
    let _fail_points = fail::FailScenario::setup();
    let _log_writer = init_logging(cli.log_format);
    let outcome = match cli.command {
        Command::Serve(args) => sigil::server::serve(args).await,
        Command::RootKey(RootKeyCommand::Create(args)) => sigil::server::create_root_key(args).await,
        Command::RootKey(RootKeyCommand::Revoke(args)) => sigil::server::revoke_root_key(args).await,
        Command::Healthcheck(args) => sigil::healthcheck::healthcheck(&args.url()).await,
        Command::Backup(args) => sigil::backup::backup(&args.database.url, &args.to).await,
        Command::Identities(IdentitiesCommand::Export(args)) => sigil::identities_export::export(args).await,
        Command::Identities(IdentitiesCommand::Import(args)) => sigil::identities_import::import(args).await,
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("sigil: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Log lines go to stderr from a thread of their own (`sigil::log_writer`). The returned guard writes out
/// what is still waiting when `main` returns.
fn init_logging(format: LogFormat) -> Option<LogWriterGuard> {
    let (writer, guard) = match LogWriter::start(std::io::stderr()) {
        Ok(started) => started,
        Err(error) => {
            eprintln!("sigil: cannot start the log thread, logging nothing: {error}");
            return None;
        }
    };
    let request_lines = writer.clone();
    let is_terminal = std::io::stderr().is_terminal();
    let format_layer = tracing_subscriber::fmt::layer().with_writer(writer).with_ansi(is_terminal);
    let format_layer = match format {
        LogFormat::Text => {
            format_layer.event_format(InRequest::text(tracing_subscriber::fmt::format().with_ansi(is_terminal))).boxed()
        }
        LogFormat::Json => {
            sigil::request_log::write_json_lines_to(request_lines);
            // Any span (a dependency's, at debug level) is left out: a line's `span` is its request.
            let json = tracing_subscriber::fmt::format().json().with_current_span(false).with_span_list(false);
            format_layer.event_format(InRequest::json(json)).boxed()
        }
    };
    tracing_subscriber::registry().with(format_layer).with(log_filter()).init();
    Some(guard)
}

/// `SIGIL_LOG`, as targets and levels (`info`, `sigil=debug,sqlx=warn`); `info` when unset or unreadable.
/// Not `EnvFilter`: it takes a lock and a thread-local on every span enter and exit, which sqlx makes once
/// per row it reads (3-4% of a list page's profile, when requests had spans).
fn log_filter() -> Targets {
    std::env::var("SIGIL_LOG")
        .ok()
        .and_then(|directives| directives.parse().ok())
        .unwrap_or_else(|| Targets::new().with_default(Level::INFO))
}

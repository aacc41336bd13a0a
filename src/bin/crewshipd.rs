//! crewshipd: the control-plane daemon.

use clap::Parser;
use crewship::config::{Config, Flags};

// jemalloc: its statistics back the memory series on /metrics.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    if config.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let flags = Flags::parse();
    let config = match Config::load(&flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("crewshipd: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(&config);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    match crewship::daemon::run(config).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "crewshipd failed");
            eprintln!("crewshipd: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

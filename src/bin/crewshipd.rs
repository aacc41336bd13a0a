//! crewshipd: the control-plane daemon.

use std::io::Write;

use crewship::config::{self, CommandLine, Config};

// jemalloc: its statistics back the memory series on /metrics.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Standard error for logs, where a failed write (a closed pipe, a full
/// disk) drops the line: logging must never take the daemon down.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = std::io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging(config: &Config) {
    // The filter was checked when the configuration was read.
    let filter = tracing_subscriber::EnvFilter::new(&config.logging.filter);
    // Colours only for a terminal: a log file or journald gets plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Stderr)
        .with_ansi(ansi)
        // Its own report of a failed write would go to stderr too, with a
        // panic if that fails.
        .log_internal_errors(false);
    if config.logging.json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// A message for whoever started the daemon, if anyone still listens.
fn tell(message: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{message}");
}

/// `--man DIR`: crewshipd(8) into DIR/man8.
fn man_page(dir: &std::path::Path) -> std::process::ExitCode {
    let dir = dir.join("man8");
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| config::man_page())
        .and_then(|page| std::fs::write(dir.join("crewshipd.8"), page));
    match written {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tell(format_args!("crewshipd: cannot write {}/crewshipd.8: {e}", dir.display()));
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--check-config`: the effective settings, then whether they hold.
fn check(line: &CommandLine) -> std::process::ExitCode {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "# crewshipd {} configuration in effect (secrets redacted)", env!("CARGO_PKG_VERSION"));
    for l in line.effective() {
        let _ = writeln!(out, "{l}");
    }
    let checked = line.config().map_err(|e| e.to_string()).and_then(|c| {
        crewship::daemon::check(&c).map_err(|e| e.to_string())?;
        Ok(c.warnings)
    });
    match checked {
        Ok(warnings) => {
            for w in warnings {
                let _ = writeln!(out, "# warning: {w}");
            }
            let _ = writeln!(out, "# configuration OK");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            tell(format_args!("crewshipd: configuration error: {e}"));
            std::process::ExitCode::from(2)
        }
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let line = CommandLine::parse();
    if line.check_config() {
        return check(&line);
    }
    if let Some(dir) = line.man_dir() {
        return man_page(dir);
    }
    let config = match line.config() {
        Ok(c) => c,
        Err(e) => {
            tell(format_args!("crewshipd: configuration error: {e}"));
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
            tell(format_args!("crewshipd: {e}"));
            std::process::ExitCode::FAILURE
        }
    }
}

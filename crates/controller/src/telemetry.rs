//! Logging set-up: `tracing` with text or JSON lines; `RUST_LOG`, when set, overrides the level.

use tracing_subscriber::{EnvFilter, fmt};

use crate::config::{LogFormat, LogLevel};

/// Installs the global subscriber. Safe to call once per process.
pub fn init(level: LogLevel, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level.directive()));
    // Colour codes only help a terminal; in a log file or collector they are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second init (e.g. in tests) fails harmlessly; keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

//! Logging: the flags every command takes, the set-up (stderr and `--log-file`, text or JSON),
//! and the writer that prints each line above the progress bars, whole, with the control
//! characters its fields carry escaped.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use indicatif::{MultiProgress, ProgressDrawTarget};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Logging flags, shared by every command.
#[derive(Debug, Clone, clap::Args)]
pub struct LogArgs {
    /// More detail: -v debug, -vv trace
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only warnings and errors
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: LogFormat,
    /// Also write logs to this file
    #[arg(long, global = true)]
    pub log_file: Option<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The one MultiProgress: bars are added to it and log lines are written through it.
pub(crate) fn multi() -> &'static MultiProgress {
    static MP: OnceLock<MultiProgress> = OnceLock::new();
    MP.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(4)))
}

/// Clears the bars (before an error message is printed).
pub fn clear() {
    let _ = multi().clear();
}

/// Where a log line goes: stderr through [`MultiProgress::suspend`] (so it never tears the
/// bars), or the `--log-file`.
#[derive(Clone)]
enum Sink {
    Stderr,
    File(Arc<std::fs::File>),
}

/// A [`MakeWriter`] for one [`Sink`].
#[derive(Clone)]
struct Lines(Sink);

/// One log line, buffered, escaped ([`escape_controls`]) and written whole on drop.
struct LineWriter(Sink, Vec<u8>);

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.1.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        let line = escape_controls(&self.1);
        match &self.0 {
            Sink::Stderr => multi().suspend(|| {
                let _ = std::io::stderr().lock().write_all(&line);
            }),
            Sink::File(f) => {
                let _ = (&**f).write_all(&line);
            }
        }
    }
}

impl<'a> MakeWriter<'a> for Lines {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self.0.clone(), Vec::with_capacity(256))
    }
}

/// A log line with every control character that came from a field's value (a CSV cell, a file
/// name, an answer from X) escaped as `\u{1b}`, so that no log line can retitle, clear or move
/// the terminal, or split itself in two. The line's own end stays, and so do the colour codes
/// (`ESC [ … m`) the formatter writes itself.
fn escape_controls(line: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(line);
    let body = text.strip_suffix('\n').unwrap_or(&text);
    let mut out = String::with_capacity(line.len() + 8);
    let mut chars = body.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\u{1b}' {
            let rest = &body[i + 1..];
            let sgr = rest.strip_prefix('[').and_then(|r| r.find('m').map(|end| &r[..end]));
            if let Some(params) = sgr.filter(|p| p.chars().all(|c| c.is_ascii_digit() || c == ';')) {
                out.push('\u{1b}');
                out.push('[');
                out.push_str(params);
                out.push('m');
                for _ in 0..params.len() + 2 {
                    chars.next();
                }
                continue;
            }
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    if text.ends_with('\n') {
        out.push('\n');
    }
    out.into_bytes()
}

/// Keeps the log file open; dropped at exit.
pub struct LogGuard(#[allow(dead_code)] Option<Arc<std::fs::File>>);

/// Sets up tracing: stderr (through the bars), and optionally a file, as text or JSON.
pub fn init(args: &LogArgs) -> anyhow::Result<LogGuard> {
    let level = if args.quiet {
        "warn"
    } else {
        match args.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    // Our crate at the chosen level; the libraries one step quieter unless tracing everything.
    let directive = if level == "trace" { "trace".to_string() } else { format!("warn,followq={level}") };
    let make_filter = || EnvFilter::new(&directive);
    let json = args.log_format == LogFormat::Json;
    let stderr_layer = if json {
        tracing_subscriber::fmt::layer().json().with_writer(Lines(Sink::Stderr)).with_filter(make_filter()).boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_writer(Lines(Sink::Stderr))
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(make_filter())
            .boxed()
    };
    let mut file_guard = None;
    let file_layer = match &args.log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("--log-file {}: {e}", path.display()))?;
            let f = Arc::new(f);
            file_guard = Some(f.clone());
            let layer = tracing_subscriber::fmt::layer().with_writer(Lines(Sink::File(f))).with_ansi(false);
            Some(if json {
                layer.json().with_filter(make_filter()).boxed()
            } else {
                layer.with_filter(make_filter()).boxed()
            })
        }
        None => None,
    };
    tracing_subscriber::registry().with(stderr_layer).with(file_layer).try_init().ok();
    Ok(LogGuard(file_guard))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12, 8: a header cell `no\e]0;pwned\atest` reached the terminal raw through a log
    /// field and retitled it; a newline in an inbox file name split a log line.
    #[test]
    fn log_lines_escape_what_their_fields_carry_but_keep_their_colours() {
        let line = "\u{1b}[33mWARN\u{1b}[0m ignoring columns columns='no\u{1b}]0;pwned\u{7}test' file=a\nb.csv\n";
        let out = String::from_utf8(escape_controls(line.as_bytes())).unwrap();
        assert_eq!(
            out,
            "\u{1b}[33mWARN\u{1b}[0m ignoring columns columns='no\\u{1b}]0;pwned\\u{7}test' file=a\\nb.csv\n"
        );
        assert_eq!(escape_controls(b"plain\n"), b"plain\n");
    }
}

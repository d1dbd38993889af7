//! Logging: `tracing` with an env filter (`RUST_LOG`, default `info`) in json or pretty format.
//!
//! A busy server logs a line per call, so lines are not written one system call each: they collect in a buffer
//! that is written when the next line would take it past [`WRITE_BYTES_MAX`], and at the latest
//! [`FLUSH_INTERVAL`] after its first line (a thread of its own looks five times a second), and by [`flush`] at exit.
//! Nothing is dropped. Errors and warnings are written at once.

use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tracing_subscriber::{
    EnvFilter, Layer, Registry, fmt, fmt::MakeWriter, layer::SubscriberExt, util::SubscriberInitExt,
};

use crate::config::LogFormat;

/// The most one write of log lines carries: the atomic size of a pipe write, so a line printed to stdout at the
/// same time (the bootstrap key) never lands inside a log line.
const WRITE_BYTES_MAX: usize = 4096;
/// How long a line may wait in the buffer.
const FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Installs the global subscriber. Safe to call more than once (later calls are ignored), which tests rely on.
pub fn init(format: LogFormat) {
    init_with_default_filter(format, "info");
}

/// Like [`init`], with the filter used when `RUST_LOG` is unset (tests pass `warn`).
pub fn init_with_default_filter(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    // Colours only on a terminal: redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let writer = BatchedStdout::shared();
    let layer = fmt::layer().with_writer(writer.clone());
    let layer: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => Box::new(layer.json().with_current_span(true)),
        LogFormat::Pretty => Box::new(layer.compact().with_ansi(ansi)),
    };
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(filter)
        .try_init();
    if installed.is_ok() {
        let flusher = writer.clone();
        let _ = std::thread::Builder::new()
            .name("points-log-flush".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(FLUSH_INTERVAL);
                    flusher.flush_buffer();
                }
            });
    }
}

/// Writes every buffered log line.
pub fn flush() {
    BatchedStdout::shared().flush_buffer();
}

/// Standard output, written in batches of whole lines.
#[derive(Clone)]
struct BatchedStdout {
    inner: Arc<Mutex<Batch>>,
}

struct Batch {
    buffer: Vec<u8>,
    out: Box<dyn Write + Send>,
}

impl BatchedStdout {
    /// The one instance of the process.
    fn shared() -> BatchedStdout {
        static SHARED: OnceLock<BatchedStdout> = OnceLock::new();
        SHARED
            .get_or_init(|| {
                // Stdout's descriptor without `std::io::Stdout`'s line buffering, which writes each line on its own.
                let out: Box<dyn Write + Send> =
                    match std::io::stdout().as_fd().try_clone_to_owned() {
                        Ok(descriptor) => Box::new(std::fs::File::from(descriptor)),
                        Err(_) => Box::new(std::io::stdout()),
                    };
                BatchedStdout {
                    inner: Arc::new(Mutex::new(Batch {
                        buffer: Vec::with_capacity(WRITE_BYTES_MAX),
                        out,
                    })),
                }
            })
            .clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Batch> {
        self.inner
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn flush_buffer(&self) {
        self.lock().write_out();
    }
}

impl Batch {
    fn write_out(&mut self) {
        if !self.buffer.is_empty() {
            // A log line that cannot be written has nowhere else to go.
            let _ = self.out.write_all(&self.buffer);
            self.buffer.clear();
        }
    }
}

/// One event's line (the formatter writes each event whole, in one `write_all`).
struct Line<'a> {
    batch: &'a BatchedStdout,
    urgent: bool,
}

impl Write for Line<'_> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut batch = self.batch.lock();
        if batch.buffer.len() + line.len() > WRITE_BYTES_MAX {
            batch.write_out();
        }
        batch.buffer.extend_from_slice(line);
        if self.urgent || batch.buffer.len() >= WRITE_BYTES_MAX {
            batch.write_out();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedStdout {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        Line {
            batch: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Line<'a> {
        Line {
            batch: self,
            urgent: *meta.level() <= tracing::Level::WARN,
        }
    }
}

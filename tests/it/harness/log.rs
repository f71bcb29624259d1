//! What the service logs, for tests that assert what an operator reads.

use std::sync::Arc;

/// The log lines, in logfmt as the binary writes them, of the service code that runs on this
/// thread while it lives: for in-process tests (`TestApp`, a `#[tokio::test]` on one thread) that
/// assert what an operator reads.
pub struct CapturedLog {
    lines: Arc<std::sync::Mutex<Vec<u8>>>,
    _on_this_thread: tracing::subscriber::DefaultGuard,
}

impl CapturedLog {
    pub fn start() -> CapturedLog {
        use tracing_subscriber::prelude::*;
        let lines = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = lines.clone();
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::EnvFilter::new(
                "alertmanager_sipgate=info",
            ))
            .with(
                tracing_logfmt::builder()
                    .with_span_name(false)
                    .with_span_path(false)
                    .layer()
                    .with_writer(move || LogSink(sink.clone())),
            );
        CapturedLog {
            lines,
            _on_this_thread: tracing::subscriber::set_default(subscriber),
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.lines.lock().unwrap()).into_owned()
    }
}

struct LogSink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogSink {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The lines of `log` that contain `text`.
pub fn lines_with<'a>(log: &'a str, text: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(text)).collect()
}

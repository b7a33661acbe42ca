//! The writer task: the one owner of the access log's destination.
//!
//! Lines arrive formatted over a bounded channel and go through a buffered writer, flushed
//! when the channel runs empty and at least every [`FLUSH_INTERVAL`] while lines keep coming.
//! A write error is logged once and the lines after it are discarded: the gateway keeps
//! serving when its log destination is gone (a closed stdout pipe, a full disk).

use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::config::AccessLogDestination;

/// Longest time a written line waits in the buffer while traffic continues.
const FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Buffer size of the destination.
const BUFFER_BYTES: usize = 64 * 1024;

/// Where lines go.
pub(super) type Output = Pin<Box<dyn AsyncWrite + Send>>;

/// Opens `destination`; a file is created if needed and appended to.
pub(super) fn open(destination: &AccessLogDestination) -> Result<Output, std::io::Error> {
    Ok(match destination {
        AccessLogDestination::Stdout => Box::pin(tokio::io::stdout()),
        AccessLogDestination::Stderr => Box::pin(tokio::io::stderr()),
        AccessLogDestination::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            Box::pin(tokio::fs::File::from_std(file))
        }
    })
}

/// Writes every line received until `stop` is cancelled or every sender is gone, then writes
/// what is still queued and flushes. With `previous` (the writer a reload replaced), it first
/// waits for that one to finish, so the lines of both keep their order; its own lines wait in
/// the channel meanwhile.
pub(super) async fn run(
    output: Output,
    mut lines: mpsc::Receiver<String>,
    stop: CancellationToken,
    previous: Option<JoinHandle<()>>,
) {
    if let Some(previous) = previous {
        let _ = previous.await;
    }
    let mut output = Destination {
        writer: BufWriter::with_capacity(BUFFER_BYTES, output),
        failed: false,
        dirty: false,
    };
    let mut ticker = tokio::time::interval(FLUSH_INTERVAL);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            line = lines.recv() => match line {
                Some(line) => {
                    output.write(&line).await;
                    if lines.is_empty() {
                        output.flush().await;
                    }
                }
                None => break,
            },
            _ = ticker.tick() => output.flush().await,
        }
    }
    lines.close();
    while let Ok(line) = lines.try_recv() {
        output.write(&line).await;
    }
    output.flush().await;
}

struct Destination {
    writer: BufWriter<Output>,
    /// Set by the first write error; nothing is written after it.
    failed: bool,
    /// Whether the buffer may hold unflushed bytes.
    dirty: bool,
}

impl Destination {
    async fn write(&mut self, line: &str) {
        if self.failed {
            return;
        }
        let written = async {
            self.writer.write_all(line.as_bytes()).await?;
            self.writer.write_all(b"\n").await
        }
        .await;
        self.dirty = true;
        if let Err(error) = written {
            self.fail(&error);
        }
    }

    async fn flush(&mut self) {
        if self.failed || !self.dirty {
            return;
        }
        self.dirty = false;
        if let Err(error) = self.writer.flush().await {
            self.fail(&error);
        }
    }

    fn fail(&mut self, error: &std::io::Error) {
        self.failed = true;
        warn!(error = %error, "cannot write the access log; discarding its lines from now on");
    }
}

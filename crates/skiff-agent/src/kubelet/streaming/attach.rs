//! `kubectl attach`: a running container's output from now on — read from its log as the
//! container monitor writes it, stdout and stderr apart — and, for a container with
//! `stdin: true`, input written to the FIFO the monitor gave it as stdin; with
//! `stdinOnce`, the end of the first session's input ends the container's. The session
//! ends when the container's run does.
//!
//! A container with a terminal (`tty: true`) has one stream: the terminal's output, in
//! the log as stdout; a resize goes to the monitor's resize FIFO as `WIDTH HEIGHT`.

use std::path::PathBuf;

use skiff_runtime::cri_log::Stream;
use tokio::io::AsyncWriteExt;

use super::exec::{Input, Output, Session};
use crate::kubelet::logs::{self, LogOptions};

/// The session for one container run: its log, its bundle, and its stdin and resize
/// FIFOs (when it has them).
pub fn session(
    log: PathBuf,
    bundle: PathBuf,
    stdin: Option<PathBuf>,
    resize: Option<PathBuf>,
) -> Session {
    Box::new(move |mut input, output| {
        Box::pin(async move {
            // Input is fed only once the follow stands at the log's end: output the input
            // causes must not land before it and be skipped.
            let (positioned_tx, positioned) = tokio::sync::oneshot::channel::<()>();
            let follow = tokio::task::spawn_blocking(move || {
                let positioned_tx = std::cell::Cell::new(Some(positioned_tx));
                let options = LogOptions {
                    follow: true,
                    tail_lines: Some(0),
                    ..Default::default()
                };
                logs::stream(
                    &log,
                    &options,
                    // First asked after the log was read to its end.
                    || {
                        if let Some(tx) = positioned_tx.take() {
                            let _ = tx.send(());
                        }
                        crate::kubelet::pod_dir::run_is_over(&bundle)
                    },
                    |stream, bytes| {
                        if bytes.is_empty() {
                            return !output.is_closed();
                        }
                        let message = match stream {
                            Stream::Stdout => Output::Stdout(bytes),
                            Stream::Stderr => Output::Stderr(bytes),
                        };
                        output.blocking_send(message).is_ok()
                    },
                )
            });
            let feed = tokio::spawn(async move {
                let _ = positioned.await;
                // Opening fails when nothing reads the FIFO any more (the run ended).
                let open = |path: Option<PathBuf>| {
                    path.and_then(|p| {
                        tokio::net::unix::pipe::OpenOptions::new()
                            .open_sender(&p)
                            .ok()
                    })
                };
                let attached = stdin
                    .as_ref()
                    .and_then(|p| p.parent())
                    .map(|b| b.join(skiff_runtime::monitor::STDIN_ATTACHED));
                let mut fifo = open(stdin);
                // With stdinOnce the monitor lets go of its own writer now, so the end of
                // this session's input is the end of the container's.
                if let (Some(_), Some(marker)) = (&fifo, attached) {
                    let _ = std::fs::write(marker, b"");
                }
                let mut resizes = open(resize);
                while let Some(message) = input.recv().await {
                    match message {
                        Input::Stdin(bytes) => {
                            if let Some(w) = fifo.as_mut()
                                && w.write_all(&bytes).await.is_err()
                            {
                                fifo = None;
                            }
                        }
                        // The container's stdin stays open for the next attach, unless
                        // it is stdinOnce (see above).
                        Input::CloseStdin => fifo = None,
                        Input::Resize { width, height } => {
                            if let Some(w) = resizes.as_mut() {
                                let line = format!("{width} {height}\n");
                                let _ = w.write_all(line.as_bytes()).await;
                            }
                        }
                    }
                }
            });
            let followed = follow.await;
            feed.abort();
            match followed {
                Ok(Ok(())) => Ok(0),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(std::io::Error::other(e.to_string())),
            }
        })
    })
}

//! `kubectl attach`: a running container's output from now on — read from its log as the
//! container monitor writes it, stdout and stderr apart — and, for a container with
//! `stdin: true`, input written to the FIFO the monitor gave it as stdin. The session ends
//! when the container's run does.
//!
//! A container with a terminal (`tty: true`) has one stream: the terminal's output, in
//! the log as stdout; a resize goes to the monitor's resize FIFO as `WIDTH HEIGHT`.

use std::path::PathBuf;

use skiff_runtime::cri_log::Stream;
use tokio::io::AsyncWriteExt;

use super::exec::{Input, Output, Session};
use super::logs::{self, LogOptions};

/// The session for one container run: its log, its exit file, and its stdin and resize
/// FIFOs (when it has them).
pub fn session(
    log: PathBuf,
    exit_file: PathBuf,
    stdin: Option<PathBuf>,
    resize: Option<PathBuf>,
) -> Session {
    Box::new(move |mut input, output| {
        Box::pin(async move {
            let follow = tokio::task::spawn_blocking(move || {
                let options = LogOptions {
                    follow: true,
                    tail_lines: Some(0),
                    ..Default::default()
                };
                logs::stream(
                    &log,
                    &options,
                    || exit_file.exists(),
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
                // Opening fails when nothing reads the FIFO any more (the run ended).
                let open = |path: Option<PathBuf>| {
                    path.and_then(|p| {
                        tokio::net::unix::pipe::OpenOptions::new()
                            .open_sender(&p)
                            .ok()
                    })
                };
                let mut fifo = open(stdin);
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
                        // The container's stdin stays open for the next attach.
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

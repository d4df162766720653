//! Exec over SPDY, the `v4.channel.k8s.io` stream protocol (kubectl ≤ 1.29, and newer
//! clients when WebSocket is refused): the client opens one SPDY stream per role, named by
//! its `streamtype` header — `error`, `stdin`, `stdout`, `stderr`, `resize` — and the
//! command's status ends on the error stream as a JSON `Status`.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

use super::exec::{self, ExecOptions, Input, Output, Session};
use skiff_spdy::{self as spdy, Frame, FrameReader, FrameWriter};

/// The one version spoken: JSON status on the error stream, and resizes.
pub const PROTOCOL: &str = "v4.channel.k8s.io";

/// How long the client has to open the streams it asked for.
const STREAMS_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Role {
    Error,
    Stdin,
    Stdout,
    Stderr,
    Resize,
}

impl Role {
    fn parse(name: &str) -> Option<Role> {
        Some(match name {
            "error" => Role::Error,
            "stdin" => Role::Stdin,
            "stdout" => Role::Stdout,
            "stderr" => Role::Stderr,
            "resize" => Role::Resize,
            _ => return None,
        })
    }
}

/// The streams a request needs before the command starts.
fn expected(options: &ExecOptions) -> Vec<Role> {
    let mut roles = vec![Role::Error];
    for (on, role) in [
        (options.stdin, Role::Stdin),
        (options.stdout, Role::Stdout),
        (options.stderr, Role::Stderr),
        (options.tty, Role::Resize),
    ] {
        if on {
            roles.push(role);
        }
    }
    roles
}

/// Resize messages: JSON objects, one after another.
fn resizes(buffer: &mut Vec<u8>) -> Vec<Input> {
    let mut out = Vec::new();
    let mut stream = serde_json::Deserializer::from_slice(buffer).into_iter::<serde_json::Value>();
    let mut used = 0;
    while let Some(Ok(size)) = stream.next() {
        used = stream.byte_offset();
        if let (Some(w), Some(h)) = (size["Width"].as_u64(), size["Height"].as_u64()) {
            out.push(Input::Resize {
                width: w.min(u16::MAX as u64) as u16,
                height: h.min(u16::MAX as u64) as u16,
            });
        }
    }
    buffer.drain(..used);
    out
}

/// Runs `session` for the SPDY client on `io` (an upgraded connection) until it ends.
pub async fn serve<IO>(io: IO, options: ExecOptions, session: Session)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let mut reader = FrameReader::new(read);
    let writer = FrameWriter::new(write);
    let mut streams: HashMap<Role, u32> = HashMap::new();
    let wanted = expected(&options);
    let opened = tokio::time::timeout(STREAMS_TIMEOUT, async {
        while !wanted.iter().all(|r| streams.contains_key(r)) {
            match reader.next().await {
                Ok(Some(Frame::SynStream { id, headers, .. })) => {
                    writer.reply(id).await?;
                    if let Some(role) = spdy::header(&headers, "streamtype").and_then(Role::parse) {
                        streams.insert(role, id);
                    }
                }
                Ok(Some(Frame::Ping { id })) => writer.ping(id).await?,
                Ok(Some(_)) => {}
                Ok(None) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Err(e) => return Err(e),
            }
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    if !matches!(opened, Ok(Ok(()))) {
        tracing::debug!(?opened, "an exec client did not open its streams");
        writer.close().await;
        return;
    }
    let stream = |role| streams.get(&role).copied();
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let mut run = tokio::spawn(session(in_rx, out_tx));
    let mut resize_buffer = Vec::new();
    let send = |output: Output| {
        let writer = writer.clone();
        let (id, data) = match output {
            Output::Stdout(b) => (stream(Role::Stdout), b),
            Output::Stderr(b) => (stream(Role::Stderr), b),
        };
        async move {
            match id {
                Some(id) => writer.data(id, &data, false).await,
                None => Ok(()),
            }
        }
    };
    let result = loop {
        tokio::select! {
            output = out_rx.recv() => {
                if let Some(output) = output
                    && send(output).await.is_err()
                {
                    run.abort();
                    return;
                }
            }
            frame = reader.next() => match frame {
                Ok(Some(Frame::Data { id, fin, data })) => {
                    if Some(id) == stream(Role::Stdin) {
                        if !data.is_empty() {
                            let _ = in_tx.send(Input::Stdin(data)).await;
                        }
                        if fin {
                            let _ = in_tx.send(Input::CloseStdin).await;
                        }
                    } else if Some(id) == stream(Role::Resize) {
                        resize_buffer.extend_from_slice(&data);
                        for resize in resizes(&mut resize_buffer) {
                            let _ = in_tx.send(resize).await;
                        }
                    }
                }
                Ok(Some(Frame::SynStream { id, .. })) => {
                    let _ = writer.reset(id, spdy::REFUSED_STREAM).await;
                }
                Ok(Some(Frame::Ping { id })) => {
                    let _ = writer.ping(id).await;
                }
                Ok(Some(_)) => {}
                // The client went away: the command gets no more input and is left to end.
                Ok(None) | Err(_) => {
                    run.abort();
                    return;
                }
            },
            done = &mut run => break done,
        }
    };
    drop(in_tx);
    while let Ok(output) = out_rx.try_recv() {
        if send(output).await.is_err() {
            return;
        }
    }
    let status = exec::final_status(&options.command, result);
    for role in [Role::Stdout, Role::Stderr] {
        if let Some(id) = stream(role) {
            let _ = writer.data(id, &[], true).await;
        }
    }
    if let Some(id) = stream(Role::Error) {
        let _ = writer.data(id, status.to_string().as_bytes(), true).await;
    }
    writer.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_streams_needed_follow_the_options() {
        let options = ExecOptions {
            stdout: true,
            tty: true,
            ..Default::default()
        };
        assert_eq!(
            expected(&options),
            [Role::Error, Role::Stdout, Role::Resize]
        );
    }

    #[test]
    fn resizes_are_read_as_they_complete() {
        let mut buffer = br#"{"Width":80,"Height":24}
{"Width":100,"He"#
            .to_vec();
        assert_eq!(
            resizes(&mut buffer),
            [Input::Resize {
                width: 80,
                height: 24
            }]
        );
        buffer.extend_from_slice(br#"ight":30}"#);
        assert_eq!(
            resizes(&mut buffer),
            [Input::Resize {
                width: 100,
                height: 30
            }]
        );
        assert!(buffer.iter().all(u8::is_ascii_whitespace));
    }
}

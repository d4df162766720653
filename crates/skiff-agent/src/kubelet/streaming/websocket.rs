//! Exec over WebSocket, Kubernetes' channel protocol (`v5.channel.k8s.io`, which kubectl
//! 1.30+ offers, and `v4.channel.k8s.io`, which other clients use): every binary message
//! starts with its channel — 0 stdin, 1 stdout, 2 stderr, 3 the error channel (a `Status`,
//! sent once at the end), 4 terminal size (`{"Width":…,"Height":…}`). v5 adds a close
//! signal: `[255, channel]` ends that channel's input.

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::exec::{self, ExecOptions, Input, Output, Session};

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
/// What this side speaks, preferred first.
pub const PROTOCOLS: [&str; 2] = [V5, V4];

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TerminalSize {
    width: u16,
    height: u16,
}

/// What a client's message asks of the command, if anything.
fn input_of(data: &[u8], v5: bool) -> Option<Input> {
    let (&channel, payload) = data.split_first()?;
    match channel {
        STDIN => Some(Input::Stdin(payload.to_vec())),
        RESIZE => {
            let size: TerminalSize = serde_json::from_slice(payload).ok()?;
            Some(Input::Resize {
                width: size.width,
                height: size.height,
            })
        }
        CLOSE if v5 && payload.first() == Some(&STDIN) => Some(Input::CloseStdin),
        _ => None,
    }
}

fn frame(channel: u8, data: &[u8]) -> Message {
    let mut bytes = Vec::with_capacity(data.len() + 1);
    bytes.push(channel);
    bytes.extend_from_slice(data);
    Message::Binary(bytes.into())
}

/// Runs `session` for the client at the other end of `socket` until it ends, then sends its
/// status and closes.
pub async fn serve(mut socket: WebSocket, protocol: &str, options: ExecOptions, session: Session) {
    let v5 = protocol == V5;
    let (in_tx, in_rx) = mpsc::channel(16);
    let (out_tx, mut out_rx) = mpsc::channel(16);
    let mut run = tokio::spawn(session(in_rx, out_tx));
    let input = in_tx;
    let result = loop {
        tokio::select! {
            output = out_rx.recv() => {
                let message = match output {
                    Some(Output::Stdout(b)) => frame(STDOUT, &b),
                    Some(Output::Stderr(b)) => frame(STDERR, &b),
                    None => continue,
                };
                if socket.send(message).await.is_err() {
                    // The client is gone; the command gets no more input and is left to end.
                    run.abort();
                    return;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => {
                    if let Some(i) = input_of(&data, v5) {
                        let _ = input.send(i).await;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    run.abort();
                    return;
                }
                Some(Ok(_)) => {}
            },
            done = &mut run => break done,
        }
    };
    drop(input);
    // Output the command wrote before it ended is still queued.
    while let Ok(output) = out_rx.try_recv() {
        let message = match output {
            Output::Stdout(b) => frame(STDOUT, &b),
            Output::Stderr(b) => frame(STDERR, &b),
        };
        if socket.send(message).await.is_err() {
            return;
        }
    }
    let status = exec::final_status(&options.command, result);
    let _ = socket
        .send(frame(ERROR, status.to_string().as_bytes()))
        .await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_are_read_per_channel() {
        assert_eq!(
            input_of(b"\x00hi", true),
            Some(Input::Stdin(b"hi".to_vec()))
        );
        assert_eq!(
            input_of(b"\x04{\"Width\":80,\"Height\":24}", true),
            Some(Input::Resize {
                width: 80,
                height: 24
            })
        );
        assert_eq!(input_of(&[255, 0], true), Some(Input::CloseStdin));
        assert_eq!(input_of(&[255, 0], false), None, "v4 has no close signal");
        assert_eq!(input_of(b"\x04not json", true), None);
        assert_eq!(input_of(b"", true), None);
        assert_eq!(input_of(b"\x07junk", true), None);
    }
}

//! `kubectl port-forward`: SPDY streams (`portforward.k8s.io`), bare after an HTTP upgrade
//! or inside WebSocket messages (`SPDY/3.1+portforward.k8s.io`, kubectl ≥ 1.31). Each local
//! connection is a pair of streams sharing a `requestid` — `error` and `data` — with the
//! pod port in a `port` header; the data stream is joined to a TCP connection to localhost
//! inside the pod's network namespace, and a failure to connect is told on the error stream.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::kubelet::probe::in_netns;
use skiff_spdy::{self as spdy, Frame, FrameReader, FrameWriter};

pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol that carries the SPDY connection.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod a session forwards into.
#[derive(Clone, Debug)]
pub struct Target {
    /// `namespace/name`, for messages.
    pub pod: String,
    pub uid: String,
    /// The pod's pinned network namespace.
    pub netns: PathBuf,
}

/// Connects to localhost:`port` inside the pod's network namespace (IPv4, then IPv6).
async fn connect(target: &Target, port: u16) -> Result<tokio::net::TcpStream, String> {
    let stream = in_netns(target.netns.clone(), move || {
        let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
        TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT)
            .or_else(|e4| {
                TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT)
                    .map_err(|e6| format!("IPv4: dial tcp4 {v4}: {e4}; IPv6: dial tcp6 {v6}: {e6}"))
            })
    })
    .await
    .map_err(|e| {
        format!(
            "error forwarding port {port} to pod {}, uid {}: failed to connect to localhost:{port} inside the pod's network namespace: {e}",
            target.pod, target.uid
        )
    })?;
    stream
        .set_nonblocking(true)
        .and_then(|()| tokio::net::TcpStream::from_std(stream))
        .map_err(|e| e.to_string())
}

/// One forwarded connection as the client opened it.
#[derive(Default)]
struct Request {
    error: Option<u32>,
    /// Bytes from the client for the pod, until its FIN.
    to_pod: Option<mpsc::UnboundedSender<Vec<u8>>>,
}

/// Serves port-forward streams on `io` until the client goes away.
pub async fn serve<IO>(io: IO, target: Target)
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(io);
    let mut reader = FrameReader::new(read);
    let writer = FrameWriter::new(write);
    let mut requests: HashMap<String, Request> = HashMap::new();
    // Data stream id → its request id.
    let mut data_streams: HashMap<u32, String> = HashMap::new();
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let frame = match reader.next().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "port-forward connection");
                break;
            }
        };
        match frame {
            Frame::SynStream { id, headers, .. } => {
                if writer.reply(id).await.is_err() {
                    break;
                }
                let request_id = spdy::header(&headers, "requestid")
                    .unwrap_or_default()
                    .to_string();
                let kind = spdy::header(&headers, "streamtype").unwrap_or_default();
                let port = spdy::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                let request = requests.entry(request_id.clone()).or_default();
                match (kind, port) {
                    ("error", _) => request.error = Some(id),
                    ("data", Some(port)) if port > 0 => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        request.to_pod = Some(tx);
                        data_streams.insert(id, request_id);
                        let error = request.error;
                        tasks.spawn(forward(writer.clone(), target.clone(), port, id, error, rx));
                    }
                    _ => {
                        let _ = writer.reset(id, spdy::REFUSED_STREAM).await;
                    }
                }
            }
            Frame::Data { id, fin, data } => {
                let Some(request) = data_streams.get(&id).and_then(|r| requests.get_mut(r)) else {
                    continue;
                };
                if let Some(tx) = &request.to_pod
                    && !data.is_empty()
                {
                    let _ = tx.send(data);
                }
                if fin {
                    request.to_pod = None;
                }
            }
            Frame::RstStream { id } => {
                if let Some(request_id) = data_streams.remove(&id) {
                    requests.remove(&request_id);
                }
            }
            Frame::Ping { id } => {
                let _ = writer.ping(id).await;
            }
            Frame::GoAway => break,
            Frame::Ignored => {}
        }
    }
    tasks.abort_all();
    writer.close().await;
}

/// Joins one data stream to a connection in the pod until both sides are done.
async fn forward<W: AsyncWrite + Unpin + Send + 'static>(
    writer: FrameWriter<W>,
    target: Target,
    port: u16,
    data_stream: u32,
    error_stream: Option<u32>,
    mut from_client: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let tcp = match connect(&target, port).await {
        Ok(tcp) => tcp,
        Err(message) => {
            if let Some(id) = error_stream {
                let _ = writer.data(id, message.as_bytes(), true).await;
            }
            let _ = writer.data(data_stream, &[], true).await;
            return;
        }
    };
    let _ = tcp.set_nodelay(true);
    let (mut pod_read, mut pod_write) = tcp.into_split();
    let to_pod = async move {
        while let Some(bytes) = from_client.recv().await {
            if pod_write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        // The client finished sending: so does this side of the connection.
        let _ = pod_write.shutdown().await;
    };
    let to_client = {
        let writer = writer.clone();
        async move {
            let mut buf = vec![0u8; spdy::MAX_DATA];
            loop {
                match pod_read.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if writer.data(data_stream, &buf[..n], false).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = writer.data(data_stream, &[], true).await;
        }
    };
    // As upstream's kubelet does: the forward is over when the pod's side is (the client
    // may never close its own, and waits for the error stream to end).
    let to_pod = tokio::spawn(to_pod);
    to_client.await;
    to_pod.abort();
    if let Some(id) = error_stream {
        let _ = writer.data(id, &[], true).await;
    }
}

/// Carries a SPDY connection inside WebSocket binary messages (kubectl ≥ 1.31), handing
/// this side's end to `serve`.
pub async fn serve_websocket(mut socket: WebSocket, target: Target) {
    let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
    let session = tokio::spawn(serve(ours, target));
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        tokio::select! {
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    if theirs.write_all(&bytes).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
            read = theirs.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if socket.send(Message::Binary(buf[..n].to_vec().into())).await.is_err() {
                        break;
                    }
                }
            },
        }
    }
    drop(theirs);
    let _ = session.await;
    let _ = socket.send(Message::Close(None)).await;
}

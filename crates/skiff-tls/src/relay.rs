//! One HTTP/1.1 request relayed over a connection the caller opened (to a node agent, to a
//! pod), its response handed back as it arrives. A `101 Switching Protocols` answer joins the
//! caller's own client connection (its pending upgrade) to the far one, byte for byte, so
//! the protocols spoken after it (WebSocket, SPDY) live only at the two ends.

use std::error::Error as StdError;

use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("the far end switched protocols on a request that cannot upgrade")]
    UnexpectedUpgrade,
}

/// Sends `request` over `io` and answers the response; with a 101 answer and the client's
/// `upgrade`, the two upgraded connections are joined until either ends.
pub async fn relay<IO, B>(
    io: IO,
    request: Request<B>,
    upgrade: Option<OnUpgrade>,
) -> Result<Response<Incoming>, RelayError>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "relayed connection ended with an error");
        }
    });
    let mut response = sender.send_request(request).await?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(response);
    }
    let Some(client) = upgrade else {
        return Err(RelayError::UnexpectedUpgrade);
    };
    let far = hyper::upgrade::on(&mut response);
    tokio::spawn(async move {
        let (client, far) = match tokio::join!(client, far) {
            (Ok(c), Ok(f)) => (c, f),
            (c, f) => {
                tracing::debug!(client = ?c.err(), far = ?f.err(), "upgrade failed");
                return;
            }
        };
        let _ =
            tokio::io::copy_bidirectional(&mut TokioIo::new(client), &mut TokioIo::new(far)).await;
    });
    Ok(response)
}

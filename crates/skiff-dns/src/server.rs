//! The DNS server: hickory's UDP and TCP serving, with one handler that answers the
//! cluster domain from the current [`Zone`] (authoritatively) and forwards the rest.
//! Swapping the zone is one pointer store; a question reads whichever zone is current.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::Record;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo, Server};
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::forward::Forwarder;
use crate::zone::Zone;

/// How long a TCP client may stay idle.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// The zone answers are read from; replaced whole when the cluster changes.
#[derive(Clone)]
pub struct CurrentZone(Arc<RwLock<Arc<Zone>>>);

impl CurrentZone {
    pub fn new(zone: Zone) -> CurrentZone {
        CurrentZone(Arc::new(RwLock::new(Arc::new(zone))))
    }

    pub fn replace(&self, zone: Zone) {
        *self.0.write().expect("not poisoned") = Arc::new(zone);
    }

    pub fn get(&self) -> Arc<Zone> {
        self.0.read().expect("not poisoned").clone()
    }
}

pub struct Handler {
    zone: CurrentZone,
    forwarder: Forwarder,
}

impl Handler {
    pub fn new(zone: CurrentZone, forwarder: Forwarder) -> Handler {
        Handler { zone, forwarder }
    }
}

async fn send<R: ResponseHandler>(
    request: &Request,
    mut response_handle: R,
    metadata: Metadata,
    sections: [&[Record]; 3],
    soa: Option<&Record>,
) -> ResponseInfo {
    let edns = request.edns.as_ref().map(|asked| {
        let mut edns = Edns::new();
        edns.set_max_payload(asked.max_payload().max(512));
        edns
    });
    let mut builder = MessageResponseBuilder::from_message_request(request);
    if let Some(edns) = &edns {
        builder.edns(edns);
    }
    let [answers, authorities, additionals] = sections;
    let response = builder.build(metadata, answers, authorities, soa, additionals);
    match response_handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("sending a DNS answer to {}: {e}", request.src());
            failed(request)
        }
    }
}

fn failed(request: &Request) -> ResponseInfo {
    let mut metadata = Metadata::response_from_request(&request.metadata);
    metadata.response_code = ResponseCode::ServFail;
    ResponseInfo::from(Header {
        metadata,
        counts: HeaderCounts::default(),
    })
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = true;
        if request.metadata.op_code != OpCode::Query {
            metadata.response_code = ResponseCode::NotImp;
            return send(request, response_handle, metadata, [&[], &[], &[]], None).await;
        }
        let Ok(info) = request.request_info() else {
            metadata.response_code = ResponseCode::FormErr;
            return send(request, response_handle, metadata, [&[], &[], &[]], None).await;
        };
        let query = info.query.original();
        let zone = self.zone.get();
        if let Some(answer) = zone.answer(query.name(), query.query_type()) {
            metadata.authoritative = true;
            metadata.response_code = answer.code;
            return send(
                request,
                response_handle,
                metadata,
                [&answer.answers, &[], &answer.additionals],
                answer.soa.as_ref(),
            )
            .await;
        }
        match self.forwarder.resolve(query).await {
            Ok(upstream) => {
                metadata.response_code = upstream.metadata.response_code;
                metadata.authentic_data = upstream.metadata.authentic_data;
                send(
                    request,
                    response_handle,
                    metadata,
                    [
                        &upstream.answers,
                        &upstream.authorities,
                        &upstream.additionals,
                    ],
                    None,
                )
                .await
            }
            Err(e) => {
                tracing::debug!("forwarding {} {}: {e}", query.name(), query.query_type());
                metadata.response_code = ResponseCode::ServFail;
                send(request, response_handle, metadata, [&[], &[], &[]], None).await
            }
        }
    }
}

/// Serves `handler` on these sockets until the task is dropped.
pub async fn serve(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    handler: Handler,
) -> std::io::Result<()> {
    udp.set_nonblocking(true)?;
    tcp.set_nonblocking(true)?;
    let mut server = Server::new(handler);
    server.register_socket(tokio::net::UdpSocket::from_std(udp)?);
    server.register_listener(tokio::net::TcpListener::from_std(tcp)?, TCP_TIMEOUT, 64);
    let result = server.block_until_done().await;
    result.map_err(std::io::Error::other)
}

/// A UDP socket and a TCP listener on `addr` (port 0: one free for both), made in the
/// network namespace pinned at `netns` if one is given (a socket stays in the namespace it
/// was made in).
pub fn bind(
    addr: SocketAddr,
    netns: Option<&std::path::Path>,
) -> std::io::Result<(std::net::UdpSocket, std::net::TcpListener)> {
    in_netns(netns, || {
        let udp = std::net::UdpSocket::bind(addr)?;
        let tcp = std::net::TcpListener::bind(udp.local_addr()?)?;
        Ok((udp, tcp))
    })
}

/// The UDP socket forwarded questions leave by, made in `netns` if one is given: names
/// outside the cluster are asked from the node's network, never from another.
pub fn upstream_socket(netns: Option<&std::path::Path>) -> std::io::Result<std::net::UdpSocket> {
    in_netns(netns, || std::net::UdpSocket::bind("0.0.0.0:0"))
}

/// Runs `make` on a thread that joined the network namespace at `netns`, or here.
fn in_netns<T: Send>(
    netns: Option<&std::path::Path>,
    make: impl FnOnce() -> std::io::Result<T> + Send,
) -> std::io::Result<T> {
    match netns {
        None => make(),
        Some(path) => std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    skiff_net::enter_netns(path).map_err(std::io::Error::other)?;
                    make()
                })
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("the binding thread panicked")))
        }),
    }
}

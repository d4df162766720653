//! The DNS server on loopback, asked over UDP and TCP like a pod's resolver would: cluster
//! names from the zone, other names forwarded to an upstream (a second server of ours,
//! authoritative for `example.test`) and cached, so they are still answered once the
//! upstream is gone.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_dns::{CurrentZone, Forwarder, Handler, Zone};

fn service(name: &str, ns: &str, ip: &str) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"clusterIP": ip, "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap()
}

/// A server for `domain` with these services, forwarding to `upstreams`; its address.
fn start(
    domain: &str,
    services: &[Service],
    upstreams: Vec<SocketAddr>,
) -> (SocketAddr, CurrentZone, tokio::task::JoinHandle<()>) {
    let zone = CurrentZone::new(Zone::build(domain, services, &[] as &[EndpointSlice]).unwrap());
    let (udp, tcp) = skiff_dns::bind("127.0.0.1:0".parse().unwrap(), None).unwrap();
    let addr = udp.local_addr().unwrap();
    let forwarder = Forwarder::new(upstreams, skiff_dns::upstream_socket(None).unwrap()).unwrap();
    let handler = Handler::new(zone.clone(), forwarder);
    let task = tokio::spawn(async move {
        let _ = skiff_dns::serve(udp, tcp, handler).await;
    });
    (addr, zone, task)
}

fn question(name: &str, kind: RecordType) -> Vec<u8> {
    let mut m = Message::new(4242, MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
    m.to_vec().unwrap()
}

async fn ask_udp(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    socket.send_to(&question(name, kind), server).await.unwrap();
    let mut buf = vec![0; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    Message::from_vec(&buf[..n]).unwrap()
}

async fn ask_tcp(server: SocketAddr, name: &str, kind: RecordType) -> Message {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(server).await.unwrap();
    let q = question(name, kind);
    stream
        .write_all(&(q.len() as u16).to_be_bytes())
        .await
        .unwrap();
    stream.write_all(&q).await.unwrap();
    let len = stream.read_u16().await.unwrap();
    let mut buf = vec![0; len as usize];
    stream.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

fn addresses(m: &Message) -> Vec<String> {
    m.answers.iter().map(|r| r.data.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_names_are_answered_and_others_forwarded_and_cached() {
    let (upstream, _, upstream_task) = start(
        "example.test",
        &[service("www", "web", "192.0.2.80")],
        Vec::new(),
    );
    let (server, zone, _task) = start(
        "cluster.local",
        &[service("hello-node", "default", "10.43.0.30")],
        vec![upstream],
    );

    let m = ask_udp(
        server,
        "hello-node.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(
        (m.metadata.id, m.metadata.response_code),
        (4242, ResponseCode::NoError)
    );
    assert!(m.metadata.authoritative && m.metadata.recursion_available);
    assert_eq!(addresses(&m), ["10.43.0.30"]);
    let m = ask_tcp(
        server,
        "hello-node.default.svc.cluster.local.",
        RecordType::A,
    )
    .await;
    assert_eq!(addresses(&m), ["10.43.0.30"]);
    let m = ask_udp(server, "nothing.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities.len(), 1, "the zone's SOA");

    // A new Service is answered once the zone is replaced.
    zone.replace(
        Zone::build(
            "cluster.local",
            &[
                service("hello-node", "default", "10.43.0.30"),
                service("v2", "default", "10.43.0.31"),
            ],
            &[] as &[EndpointSlice],
        )
        .unwrap(),
    );
    let m = ask_udp(server, "v2.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&m), ["10.43.0.31"]);

    // Forwarded, then cached: answered with the upstream gone.
    let m = ask_udp(server, "www.web.svc.example.test.", RecordType::A).await;
    assert_eq!(
        (m.metadata.response_code, addresses(&m)),
        (ResponseCode::NoError, vec!["192.0.2.80".to_string()])
    );
    assert!(!m.metadata.authoritative);
    upstream_task.abort();
    let _ = upstream_task.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m = ask_udp(server, "www.web.svc.example.test.", RecordType::A).await;
    assert_eq!(addresses(&m), ["192.0.2.80"], "from the cache");
    // A name never asked before, with the upstream gone: SERVFAIL, not silence.
    let m = ask_udp(server, "other.web.svc.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::ServFail);
}

//! Service networking (as root, entirely inside network namespaces made here):
//!
//! - `rules`: the service proxy with 1,000 Services and 10,000 endpoints programmed into a
//!   throwaway namespace: the full sync, then one EndpointSlice change at a time, timed
//!   from the change to the kernel's commit (computing the table and the difference, and
//!   the `nft` transaction), with the CPU each sync costs (this process and `nft`).
//! - `datapath`: HTTP requests (a new connection each, as short-lived clients make them)
//!   from a client namespace routed through the node to two pods, addressed directly and
//!   through a ClusterIP, one after the other in the same run: what the kernel's DNAT
//!   costs (both paths cross the node's IP stack; only the second is translated).
//! - `dns`: the node DNS server on one core (a single-threaded runtime) asked for a cluster
//!   name and for a cached outside name by a client keeping 64 questions in flight; the
//!   same client against a UDP echo on the same path is the floor.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_net::{Cidr, Netns, PodNetwork, enter_netns};
use skiff_proxy::{Proxier, ProxyConfig};
use skiff_runtime::sandbox::Sandbox;

use crate::fields;
use crate::stats::{Latencies, emit, round};

/// Namespaces made for one scenario, removed when it ends.
struct Namespaces(Vec<Sandbox>);

impl Namespaces {
    fn make(dir: &Path, names: &[&str]) -> Result<Namespaces> {
        let mut made = Namespaces(Vec::new());
        for name in names {
            let s = Sandbox::at(dir.join(name));
            s.create(name)
                .with_context(|| format!("the network namespace {name}"))?;
            made.0.push(s);
        }
        Ok(made)
    }

    fn net(&self, i: usize) -> PathBuf {
        self.0[i].net()
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for s in self.0.iter().rev() {
            let _ = s.remove();
        }
    }
}

/// CPU time this process and its waited-for children (`nft`) have used.
fn cpu_time() -> Duration {
    let used = |who| {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut usage) };
        let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
        tv(usage.ru_utime) + tv(usage.ru_stime)
    };
    used(libc::RUSAGE_SELF) + used(libc::RUSAGE_CHILDREN)
}

fn service(i: usize) -> Arc<Service> {
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 43, 100, 0)) + i as u32);
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "bench"},
            "spec": {"type": "NodePort", "clusterIP": ip.to_string(), "ports": [
                {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000 + i}]},
        }))
        .expect("a Service"),
    )
}

fn slice(i: usize, endpoints: &[Ipv4Addr]) -> Arc<EndpointSlice> {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|ip| {
            json!({"addresses": [ip.to_string()], "nodeName": "bench",
            "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("svc-{i}-x"), "namespace": "bench",
                "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .expect("an EndpointSlice"),
    )
}

fn endpoint_ip(service: usize, n: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 42, 0, 0)) + (service * 16 + n) as u32)
}

/// The proxy's rule latency with `services` × `per_service` endpoints.
pub fn rules(services: usize, per_service: usize, changes: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Namespaces::make(dir.path(), &["rules-node"])?;
    let netns = Netns::Path(ns.net(0));
    let svcs: Vec<Arc<Service>> = (0..services).map(service).collect();
    let mut slices: Vec<Arc<EndpointSlice>> = (0..services)
        .map(|i| {
            let eps: Vec<Ipv4Addr> = (0..per_service).map(|n| endpoint_ip(i, n)).collect();
            slice(i, &eps)
        })
        .collect();
    let mut proxier = Proxier::new(netns.clone(), "bench", ProxyConfig::default());
    let cpu = cpu_time();
    let started = Instant::now();
    let full = proxier.sync(&svcs, &slices)?;
    let full_time = started.elapsed();
    let full_cpu = cpu_time() - cpu;
    emit(
        "network.rules.full_sync",
        fields! {
            "services" => services,
            "endpoints" => services * per_service,
            "statements" => full.statements,
            "ms" => round(full_time.as_secs_f64() * 1e3),
            "compute_ms" => round(full.compute.as_secs_f64() * 1e3),
            "apply_ms" => round(full.apply.as_secs_f64() * 1e3),
            "cpu_ms" => round(full_cpu.as_secs_f64() * 1e3),
        },
    );
    let mut latencies = Latencies::with_capacity(changes);
    let mut computes = Latencies::with_capacity(changes);
    let cpu = cpu_time();
    for change in 0..changes {
        // One endpoint of one Service is replaced (a pod rescheduled).
        let i = (change * 7919) % services;
        let mut eps: Vec<Ipv4Addr> = (0..per_service).map(|n| endpoint_ip(i, n)).collect();
        eps[change % per_service] = endpoint_ip(i, per_service + change % 5);
        slices[i] = slice(i, &eps);
        let started = Instant::now();
        let report = proxier.sync(&svcs, &slices)?;
        latencies.push(started.elapsed());
        computes.push(report.compute);
    }
    let cpu_per_sync = (cpu_time() - cpu) / changes.max(1) as u32;
    let mut fields = fields! {
        "services" => services,
        "endpoints" => services * per_service,
        "changes" => changes,
        "cpu_ms_per_sync" => round(cpu_per_sync.as_secs_f64() * 1e3),
        "full_sync_ms" => round(full_time.as_secs_f64() * 1e3),
    };
    fields.extend(latencies.summary(""));
    fields.extend(computes.summary("compute_"));
    emit("network.rules.endpoint_change", fields);
    skiff_proxy::remove_rules(&netns)?;
    Ok(())
}

/// A minimal HTTP/1.0 server in `netns` on port 8080: one short answer per connection.
fn serve_http(netns: PathBuf, stop: Arc<AtomicBool>) -> Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let bound = enter_netns(&netns)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(TcpListener::bind("0.0.0.0:8080")?));
        let listener = match bound {
            Ok(l) => {
                let _ = ready_tx.send(Ok(()));
                l
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
                return;
            }
        };
        for conn in listener.incoming() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok");
            });
        }
    });
    ready_rx.recv()?
}

/// `clients` threads in `netns`, each making one request per connection to `targets` in
/// turn for `duration`: requests/s and latencies.
fn load(
    netns: &Path,
    targets: &[SocketAddr],
    clients: usize,
    duration: Duration,
) -> (f64, Latencies) {
    let deadline = Instant::now() + duration;
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let netns = netns.to_path_buf();
            let targets = targets.to_vec();
            std::thread::spawn(move || {
                let mut latencies = Latencies::default();
                if enter_netns(&netns).is_err() {
                    return latencies;
                }
                let mut buf = [0u8; 256];
                let mut turn = c;
                while Instant::now() < deadline {
                    turn += 1;
                    let to = targets[turn % targets.len()];
                    let started = Instant::now();
                    let Ok(mut conn) = TcpStream::connect_timeout(&to, Duration::from_secs(2))
                    else {
                        continue;
                    };
                    let _ = conn.write_all(b"GET / HTTP/1.0\r\n\r\n");
                    let mut got = 0;
                    while let Ok(n) = conn.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        got += n;
                    }
                    if got > 0 {
                        latencies.push(started.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Latencies::default();
    for t in threads {
        all.extend(t.join().unwrap_or_default());
    }
    let rate = all.len() as f64 / duration.as_secs_f64();
    (rate, all)
}

/// Wires the namespace `client` to `node` with a veth: the node's end `link` at
/// `<net>.1/24`, the client's `eth0` at `<net>.2/24`, routing 10.0.0.0/8 through the node.
fn wire_client(node: &Path, client: &Path, link: &str, net: &str) -> Result<()> {
    let (node_addr, client_addr) = (format!("{net}.1"), format!("{net}.2"));
    skiff_net::link_namespaces(
        skiff_net::End {
            netns: node,
            link,
            address: &format!("{node_addr}/24"),
        },
        skiff_net::End {
            netns: client,
            link: "eth0",
            address: &format!("{client_addr}/24"),
        },
    )?;
    Netns::Path(client.to_path_buf()).ip(&["route", "add", "10.0.0.0/8", "via", &node_addr])?;
    Ok(())
}

/// A client outside the pods (its own namespace, routed through the node) to two pods,
/// directly and through a ClusterIP with those pods as endpoints.
pub fn datapath(clients: usize, seconds: u64) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Namespaces::make(
        dir.path(),
        &[
            "dp-node",
            "dp-client",
            "dp-pod-a",
            "dp-pod-b",
            "dp-client-2",
        ],
    )?;
    let node = Netns::Path(ns.net(0));
    let network = PodNetwork::new(
        node.clone(),
        "skiffb0",
        Cidr::parse("10.244.200.0/24")?,
        dir.path().join("ipam"),
    );
    network.ensure_bridge()?;
    let pods = [
        network.attach("bench/a", &ns.net(2))?,
        network.attach("bench/b", &ns.net(3))?,
    ];
    // One client namespace per path, each wired to the node (addresses inside these
    // namespaces only): the paths' connections never share a conntrack tuple (a direct
    // connection's lingering TIME_WAIT entry would clash with a translated one to the same
    // pod from the same client port, and its SYN would be dropped).
    wire_client(&ns.net(0), &ns.net(1), "dpc0", "203.0.113")?;
    wire_client(&ns.net(0), &ns.net(4), "dpc1", "198.51.100")?;
    skiff_proxy::prepare_node(&node)?;
    let stop = Arc::new(AtomicBool::new(false));
    for i in 2..4 {
        serve_http(ns.net(i), stop.clone())?;
    }
    let cluster_ip = Ipv4Addr::new(10, 43, 200, 1);
    let svc: Arc<Service> = Arc::new(serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "bench"},
        "spec": {"clusterIP": cluster_ip.to_string(), "ports": [{"name": "http", "port": 80}]},
    }))?);
    let endpoints: Vec<_> = pods
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "nodeName": "bench"}))
        .collect();
    let slice: Arc<EndpointSlice> = Arc::new(serde_json::from_value(json!({
        "metadata": {"name": "web-x", "namespace": "bench", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))?);
    // No cluster CIDR: the client's traffic is not masqueraded on either path.
    let mut proxier = Proxier::new(node.clone(), "bench", ProxyConfig::default());
    proxier.sync(&[svc], &[slice])?;
    let duration = Duration::from_secs(seconds);
    // A short warm-up, so neither path pays for first connections.
    for (client, target) in [
        (ns.net(1), SocketAddr::new(pods[0].into(), 8080)),
        (ns.net(4), SocketAddr::new(cluster_ip.into(), 80)),
    ] {
        load(&client, &[target], clients, Duration::from_millis(300));
    }
    let mut rates = Vec::new();
    for (path, client, targets) in [
        (
            "direct",
            ns.net(1),
            pods.map(|p| SocketAddr::new(p.into(), 8080)).to_vec(),
        ),
        (
            "cluster_ip",
            ns.net(4),
            vec![SocketAddr::new(cluster_ip.into(), 80)],
        ),
    ] {
        let (rate, mut latencies) = load(&client, &targets, clients, duration);
        let mut fields =
            fields! {"path" => path, "clients" => clients, "requests_per_s" => round(rate)};
        fields.extend(latencies.summary(""));
        emit("network.datapath", fields);
        rates.push(rate);
    }
    emit(
        "network.datapath.ratio",
        fields! {"cluster_ip_over_direct" => round(rates[1] / rates[0])},
    );
    stop.store(true, Ordering::Relaxed);
    skiff_proxy::remove_rules(&node)?;
    Ok(())
}

/// Keeps `window` questions in flight against `server` from `netns` for `duration`:
/// answers/s and latencies. `question(id)` is the datagram for id `id`.
fn dns_load(
    netns: &Path,
    server: SocketAddr,
    window: usize,
    duration: Duration,
    question: impl Fn(u16) -> Vec<u8> + Send + 'static,
) -> Result<(f64, Latencies)> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<(f64, Latencies)> {
        enter_netns(&netns)?;
        let socket = UdpSocket::bind("127.0.0.1:0")?;
        socket.connect(server)?;
        socket.set_read_timeout(Some(Duration::from_millis(500)))?;
        let mut sent: HashMap<u16, Instant> = HashMap::new();
        let mut next: u16 = 0;
        let mut latencies = Latencies::default();
        let started = Instant::now();
        let mut buf = [0u8; 1500];
        while started.elapsed() < duration {
            while sent.len() < window {
                next = next.wrapping_add(1);
                socket.send(&question(next))?;
                sent.insert(next, Instant::now());
            }
            match socket.recv(&mut buf) {
                Ok(n) if n >= 2 => {
                    let id = u16::from_be_bytes([buf[0], buf[1]]);
                    if let Some(at) = sent.remove(&id) {
                        latencies.push(at.elapsed());
                    }
                }
                Ok(_) => {}
                // Lost questions are asked again under new ids.
                Err(_) => sent.clear(),
            }
        }
        let rate = latencies.len() as f64 / started.elapsed().as_secs_f64();
        Ok((rate, latencies))
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the DNS client thread panicked"))?
}

fn dns_question(name: &str) -> impl Fn(u16) -> Vec<u8> + Send + 'static {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::{Name, RecordType};
    let name = Name::from_ascii(name).expect("a DNS name");
    move |id| {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(name.clone(), RecordType::A));
        m.to_vec().expect("a question encodes")
    }
}

/// Runs a DNS server for `domain` with `services` on its own single-threaded runtime (one
/// core), bound at `addr` in `netns`, forwarding to `upstreams`.
fn dns_server(
    netns: &Path,
    addr: SocketAddr,
    domain: &str,
    services: Vec<Service>,
    upstreams: Vec<SocketAddr>,
) -> Result<()> {
    let (udp, tcp) = skiff_dns::bind(addr, Some(netns))?;
    let upstream_socket = skiff_dns::upstream_socket(Some(netns))?;
    let zone = skiff_dns::Zone::build(domain, &services, &[] as &[EndpointSlice])?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async move {
            let forwarder = match skiff_dns::Forwarder::new(upstreams, upstream_socket) {
                Ok(f) => f,
                Err(e) => return eprintln!("the DNS forwarder: {e}"),
            };
            let handler = skiff_dns::Handler::new(skiff_dns::CurrentZone::new(zone), forwarder);
            let _ = skiff_dns::serve(udp, tcp, handler).await;
        });
    });
    Ok(())
}

/// A UDP echo on `addr` in `netns`: the floor of the question-answer path.
fn udp_echo(netns: &Path, addr: SocketAddr) -> Result<()> {
    let netns = netns.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let socket = enter_netns(&netns)
            .map_err(anyhow::Error::from)
            .and_then(|()| Ok(UdpSocket::bind(addr)?));
        let socket = match socket {
            Ok(s) => {
                let _ = tx.send(Ok(()));
                s
            }
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    });
    rx.recv()?
}

pub fn dns(seconds: u64, window: usize) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let ns = Namespaces::make(dir.path(), &["dns-node"])?;
    let net = ns.net(0);
    let services: Vec<Service> = (0..1000).map(|i| service(i).as_ref().clone()).collect();
    let upstream: SocketAddr = "127.0.0.2:53".parse()?;
    dns_server(
        &net,
        upstream,
        "example.test",
        vec![service(7).as_ref().clone()],
        Vec::new(),
    )?;
    let server: SocketAddr = "127.0.0.1:53".parse()?;
    dns_server(&net, server, "cluster.local", services, vec![upstream])?;
    let echo: SocketAddr = "127.0.0.3:5353".parse()?;
    udp_echo(&net, echo)?;
    let duration = Duration::from_secs(seconds);
    let cases = [
        ("udp_echo_floor", echo, "svc-500.bench.svc.cluster.local."),
        ("cluster_name", server, "svc-500.bench.svc.cluster.local."),
        (
            "cached_outside_name",
            server,
            "svc-7.bench.svc.example.test.",
        ),
    ];
    for (what, to, name) in cases {
        let (rate, mut latencies) = dns_load(&net, to, window, duration, dns_question(name))?;
        let mut fields =
            fields! {"query" => what, "in_flight" => window, "answers_per_s" => round(rate)};
        fields.extend(latencies.summary(""));
        emit("network.dns", fields);
    }
    Ok(())
}

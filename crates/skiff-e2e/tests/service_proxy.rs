//! The service proxy against the real kernel, as root, entirely inside namespaces the test
//! creates: a "node" namespace with the pod bridge and two pods serving their names over
//! TCP, and a "client" namespace outside the cluster joined to the node by a veth (the
//! node's address 203.0.113.1, the client 203.0.113.2; documentation addresses that never
//! leave these namespaces). The proxier programs real nftables rules from Service and
//! EndpointSlice objects; connections go through the kernel's data path.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use skiff_net::{Cidr, Netns, PodNetwork, enter_netns, nftables};
use skiff_proxy::{Proxier, ProxyConfig, SyncKind};
use skiff_runtime::sandbox::Sandbox;

struct Namespaces(Vec<Sandbox>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = s.remove();
        }
    }
}

/// A TCP server in `netns` on port 8080 that answers every connection with `name`.
fn serve_name(netns: PathBuf, name: &'static str) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter_netns(&netns).unwrap();
        let listener = TcpListener::bind("0.0.0.0:8080").unwrap();
        ready_tx.send(()).unwrap();
        for mut conn in listener.incoming().flatten() {
            let _ = conn.write_all(name.as_bytes());
        }
    });
    ready_rx.recv().unwrap();
}

/// Connects from `netns` to `to` and reads what the server says, or the error.
fn fetch(netns: &Path, to: SocketAddr) -> std::io::Result<String> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        enter_netns(&netns).map_err(std::io::Error::other)?;
        let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        conn.set_read_timeout(Some(Duration::from_secs(3)))?;
        let mut answer = String::new();
        conn.read_to_string(&mut answer)?;
        Ok(answer)
    })
    .join()
    .unwrap()
}

/// `n` fetches from `netns`: how many answers came from each pod.
fn tally(netns: &Path, to: SocketAddr, n: usize) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..n {
        let answer = fetch(netns, to).unwrap_or_else(|e| panic!("{to}: {e}"));
        *seen.entry(answer).or_insert(0) += 1;
    }
    seen
}

fn service(name: &str, cluster_ip: &str, extra: serde_json::Value) -> Arc<Service> {
    let mut spec = json!({
        "type": "ClusterIP", "clusterIP": cluster_ip,
        "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 8080}],
    });
    let mut status = json!({});
    if let Some(extra_spec) = extra.get("spec") {
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
    }
    if let Some(s) = extra.get("status") {
        status = s.clone();
    }
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec, "status": status,
        }))
        .unwrap(),
    )
}

fn slice(service: &str, endpoints: &[(Ipv4Addr, &str)]) -> Arc<EndpointSlice> {
    let endpoints: Vec<_> = endpoints
        .iter()
        .map(|(ip, node)| {
            json!({"addresses": [ip.to_string()], "nodeName": node,
            "conditions": {"ready": true, "serving": true, "terminating": false}})
        })
        .collect();
    Arc::new(
        serde_json::from_value(json!({
            "metadata": {"name": format!("{service}-abcde"), "namespace": "default",
                "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap(),
    )
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

#[test]
fn services_reach_their_pods_through_the_kernel() {
    skiff_e2e::assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let [node, pod_a, pod_b, client] =
        ["node", "pod-a", "pod-b", "client"].map(|n| Sandbox::at(dir.join(n)));
    let _cleanup = Namespaces(vec![
        pod_a.clone(),
        pod_b.clone(),
        client.clone(),
        node.clone(),
    ]);
    for (s, name) in [
        (&node, "node"),
        (&pod_a, "pod-a"),
        (&pod_b, "pod-b"),
        (&client, "client"),
    ] {
        s.create(name).unwrap();
    }
    let node_ns = Netns::Path(node.net());
    let cidr = Cidr::parse("10.244.9.0/24").unwrap();
    let network = PodNetwork::new(node_ns.clone(), "skiff0", cidr, dir.join("ipam"));
    network.ensure_bridge().unwrap();
    let a = network.attach("default/pod-a", &pod_a.net()).unwrap();
    let b = network.attach("default/pod-b", &pod_b.net()).unwrap();
    serve_name(pod_a.net(), "pod-a");
    serve_name(pod_b.net(), "pod-b");

    // The client's wire to the node; the node's default route points at it (any route
    // will do: a cluster IP must be routable for the node's own connections to it).
    let client_ns = Netns::Path(client.net());
    let (node_net, client_net) = (node.net(), client.net());
    skiff_net::link_namespaces(
        skiff_net::End {
            netns: &node_net,
            link: "uplink",
            address: "203.0.113.1/24",
        },
        skiff_net::End {
            netns: &client_net,
            link: "eth0",
            address: "203.0.113.2/24",
        },
    )
    .unwrap();
    node_ns
        .ip(&["route", "add", "default", "via", "203.0.113.2"])
        .unwrap();
    for args in [
        &["link", "set", "lo", "up"][..],
        &["route", "add", "198.51.100.0/24", "via", "203.0.113.1"],
    ] {
        client_ns.ip(args).unwrap();
    }

    let config = ProxyConfig {
        cluster_cidr: Some(Cidr::parse("10.244.0.0/16").unwrap()),
    };
    skiff_proxy::prepare_node(&node_ns).unwrap();
    let mut proxier = Proxier::new(node_ns.clone(), "node", config.clone());
    let web = service(
        "web",
        "10.43.7.10",
        json!({"spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80,
            "protocol": "TCP", "targetPort": 8080, "nodePort": 30080}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.10"}]}}}),
    );
    let sticky = service(
        "sticky",
        "10.43.7.12",
        json!({"spec": {"sessionAffinity": "ClientIP"}}),
    );
    let empty = service("empty", "10.43.7.11", json!({}));
    let both = [(a, "node"), (b, "node")];
    let mut services = vec![web, sticky, empty];
    let mut slices = vec![slice("web", &both), slice("sticky", &both)];
    let report = proxier.sync(&services, &slices).unwrap();
    assert_eq!(report.kind, SyncKind::Full);
    assert_eq!(
        proxier.sync(&services, &slices).unwrap().kind,
        SyncKind::Nothing
    );

    // From a pod: spread over both pods, itself included (hairpin), and the other pod on
    // the same bridge (its replies pass the node's conntrack).
    let seen = tally(&pod_a.net(), addr("10.43.7.10", 80), 200);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["pod-a", "pod-b"],
        "{seen:?}"
    );
    assert!(seen.values().all(|&n| n >= 50), "random spread: {seen:?}");
    // From the node itself.
    assert_eq!(tally(&node.net(), addr("10.43.7.10", 80), 40).len(), 2);
    // From outside: the NodePort on the node's address and the load balancer's address.
    assert_eq!(
        tally(&client.net(), addr("203.0.113.1", 30080), 40).len(),
        2
    );
    assert_eq!(tally(&client.net(), addr("198.51.100.10", 80), 40).len(), 2);

    // ClientIP affinity: one client, one pod.
    let seen = tally(&pod_b.net(), addr("10.43.7.12", 80), 20);
    assert_eq!(seen.len(), 1, "{seen:?}");

    // No endpoints, or a port the cluster IP does not serve: refused at once.
    for to in [addr("10.43.7.11", 80), addr("10.43.7.10", 81)] {
        let started = Instant::now();
        let err = fetch(&pod_a.net(), to).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{to}: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{to}: rejected, not dropped"
        );
    }

    // Pod b leaves the endpoints: a partial sync, after which it gets no new connection.
    slices[0] = slice("web", &[(a, "node")]);
    let report = proxier.sync(&services, &slices).unwrap();
    assert_eq!(report.kind, SyncKind::Partial);
    let seen = tally(&pod_b.net(), addr("10.43.7.10", 80), 30);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["pod-a"]);

    // An agent restart replaces the table with the same one.
    let before = nftables::list(&node_ns, "ip", "skiff").unwrap().unwrap();
    let mut restarted = Proxier::new(node_ns.clone(), "node", config.clone());
    assert_eq!(
        restarted.sync(&services, &slices).unwrap().kind,
        SyncKind::Full
    );
    let after = nftables::list(&node_ns, "ip", "skiff").unwrap().unwrap();
    assert_eq!(
        nftables::listed_names(&before),
        nftables::listed_names(&after)
    );

    // Someone flushes the ruleset: the drift check notices and the next sync rebuilds.
    node_ns_flush(&node_ns);
    assert!(!restarted.check_drift().unwrap());
    assert_eq!(
        restarted.sync(&services, &slices).unwrap().kind,
        SyncKind::Full
    );
    assert_eq!(tally(&pod_b.net(), addr("10.43.7.10", 80), 5).len(), 1);

    // Deleting the Services leaves no rule of theirs behind.
    services.clear();
    slices.clear();
    restarted.sync(&services, &slices).unwrap();
    let left = nftables::list(&node_ns, "ip", "skiff").unwrap().unwrap();
    assert!(!left.contains("default/"), "{left}");
    assert!(!left.contains("10.43.7."), "{left}");
    skiff_proxy::remove_rules(&node_ns).unwrap();
    assert_eq!(nftables::list(&node_ns, "ip", "skiff").unwrap(), None);
}

fn node_ns_flush(netns: &Netns) {
    nftables::apply(netns, "flush ruleset\n").unwrap();
}

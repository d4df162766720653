//! Pod networking on one node, as root, entirely inside namespaces the test creates: a
//! "node" network namespace (standing in for the host, with no uplink) holds the bridge;
//! two pod sandboxes get veths and addresses from the pod CIDR and reach each other.
//! Nothing is sent outside these namespaces.

use std::process::Command;

use skiff_net::{Cidr, Netns, PodNetwork};
use skiff_runtime::sandbox::Sandbox;

/// busybox ping, once, from inside a pod's network namespace.
fn ping(from: &Sandbox, to: std::net::Ipv4Addr) -> bool {
    Command::new("nsenter")
        .arg(format!("--net={}", from.net().display()))
        .args(["busybox", "ping", "-c", "1", "-W", "2", &to.to_string()])
        .output()
        .expect("nsenter and busybox")
        .status
        .success()
}

fn ip_in(sandbox: &Sandbox, args: &[&str]) -> String {
    Netns::Path(sandbox.net()).ip(args).unwrap()
}

struct Namespaces(Vec<Sandbox>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for s in &self.0 {
            let _ = s.remove();
        }
    }
}

/// Network namespaces named `names` under `dir`, created; removed when the guard drops
/// (pods first: a node's bridge outlives its veths).
fn namespaces<const N: usize>(
    dir: &std::path::Path,
    names: [&str; N],
) -> ([Sandbox; N], Namespaces) {
    let made = names.map(|n| Sandbox::at(dir.join(n)));
    for (s, name) in made.iter().zip(names) {
        s.create(name).unwrap();
    }
    let mut guard = made.to_vec();
    guard.reverse();
    (made, Namespaces(guard))
}

#[test]
fn pods_on_a_node_get_addresses_and_reach_each_other_over_the_bridge() {
    skiff_e2e::assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let node = Sandbox::at(dir.join("node"));
    let pod_a = Sandbox::at(dir.join("pod-a"));
    let pod_b = Sandbox::at(dir.join("pod-b"));
    let _cleanup = Namespaces(vec![pod_a.clone(), pod_b.clone(), node.clone()]);
    node.create("node").unwrap();
    pod_a.create("pod-a").unwrap();
    pod_b.create("pod-b").unwrap();

    let cidr = Cidr::parse("10.244.7.0/24").unwrap();
    let network = PodNetwork::new(Netns::Path(node.net()), "skiff0", cidr, dir.join("ipam"));
    network.ensure_bridge().unwrap();
    network.ensure_bridge().unwrap(); // idempotent
    let a = network.attach("default/pod-a", &pod_a.net()).unwrap();
    let b = network.attach("default/pod-b", &pod_b.net()).unwrap();
    assert_eq!(
        (a.to_string(), b.to_string()),
        ("10.244.7.2".into(), "10.244.7.3".into())
    );
    assert_eq!(
        network.attach("default/pod-a", &pod_a.net()).unwrap(),
        a,
        "idempotent"
    );

    assert!(ip_in(&pod_a, &["-4", "-o", "addr", "show", "dev", "eth0"]).contains("10.244.7.2/24"));
    assert!(
        ip_in(&pod_a, &["route", "show", "default"]).contains("default via 10.244.7.1 dev eth0")
    );
    let on_bridge = Netns::Path(node.net())
        .ip(&["-o", "link", "show", "master", "skiff0"])
        .unwrap();
    assert_eq!(on_bridge.lines().count(), 2, "{on_bridge}");
    assert!(
        on_bridge.lines().all(|l| l.contains("state UP")),
        "{on_bridge}"
    );
    // Hairpin mode: a pod's connection to a Service may be DNATed back to itself.
    let ports = Netns::Path(node.net())
        .ip(&["-d", "-o", "link", "show", "master", "skiff0"])
        .unwrap();
    assert_eq!(ports.matches("hairpin on").count(), 2, "{ports}");
    assert!(ping(&pod_a, b), "pod a reaches pod b");
    assert!(ping(&pod_b, a), "and back");
    assert!(ping(&pod_a, cidr.gateway()), "and the node's gateway");

    // Detached: pod b is gone from the network and its address is free again.
    network.detach("default/pod-b");
    assert!(!ping(&pod_a, b));
    assert!(
        Netns::Path(pod_b.net())
            .ip(&["link", "show", "dev", "eth0"])
            .is_err()
    );
    assert_eq!(network.address_of("default/pod-b"), None);
    let c = network.attach("default/pod-c", &pod_b.net()).unwrap();
    assert_eq!(
        c.to_string(),
        "10.244.7.4",
        "a freed address is reused last"
    );
    assert!(ping(&pod_a, c));

    // After an agent restart (a fresh PodNetwork over the same records) a wired pod keeps
    // its address and its wire.
    let restarted = PodNetwork::new(Netns::Path(node.net()), "skiff0", cidr, dir.join("ipam"));
    assert_eq!(restarted.attach("default/pod-a", &pod_a.net()).unwrap(), a);
    assert!(ping(&pod_b, a));
    // A pod whose wire was cut (its veth removed by hand) is wired afresh.
    Netns::Path(node.net())
        .ip(&["link", "del", &on_bridge_name(&node, 0)])
        .unwrap();
    assert_eq!(restarted.attach("default/pod-a", &pod_a.net()).unwrap(), a);
    // (From the new end: pod b's neighbour entry for a still names the old wire's address.)
    assert!(ping(&pod_a, c));
}

/// The node-side name of the `n`th link on the bridge.
fn on_bridge_name(node: &Sandbox, n: usize) -> String {
    let links = Netns::Path(node.net())
        .ip(&["-o", "link", "show", "master", "skiff0"])
        .unwrap();
    let line = links
        .lines()
        .nth(n)
        .expect("a link on the bridge")
        .to_string();
    // "7: vethabcd1234@if2: <...": the name sits between the index and '@'.
    line.split(": ")
        .nth(1)
        .unwrap()
        .split('@')
        .next()
        .unwrap()
        .to_string()
}

/// A TCP server in `netns` on port 9090 that answers each connection with the address it
/// came from.
fn serve_peer_address(netns: std::path::PathBuf) {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        skiff_net::enter_netns(&netns).unwrap();
        let listener = std::net::TcpListener::bind("0.0.0.0:9090").unwrap();
        ready_tx.send(()).unwrap();
        for mut conn in listener.incoming().flatten() {
            use std::io::Write;
            if let Ok(peer) = conn.peer_addr() {
                let _ = conn.write_all(peer.ip().to_string().as_bytes());
            }
        }
    });
    ready_rx.recv().unwrap();
}

/// Connects from `netns` to `to`:9090 and reads the address the server saw.
fn seen_as(netns: &std::path::Path, to: std::net::Ipv4Addr) -> std::io::Result<String> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || {
        use std::io::Read;
        skiff_net::enter_netns(&netns).map_err(std::io::Error::other)?;
        let addr = std::net::SocketAddr::new(to.into(), 9090);
        let mut conn =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))?;
        let mut seen = String::new();
        conn.read_to_string(&mut seen)?;
        Ok(seen)
    })
    .join()
    .unwrap()
}

#[test]
fn pods_on_two_nodes_reach_each_other_by_routes_and_the_outside_through_nat() {
    skiff_e2e::assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ([outside, node2, node1, pod_b, pod_a], _cleanup) =
        namespaces(dir, ["outside", "node2", "node1", "pod-b", "pod-a"]);
    let (n1, n2) = (Netns::Path(node1.net()), Netns::Path(node2.net()));
    // The nodes share a link (documentation addresses, inside these namespaces only); node1
    // also has one to a host outside the cluster.
    let (node1_net, node2_net, outside_net) = (node1.net(), node2.net(), outside.net());
    let end = |netns, link, address| skiff_net::End {
        netns,
        link,
        address,
    };
    skiff_net::link_namespaces(
        end(&node1_net, "lan0", "203.0.113.1/24"),
        end(&node2_net, "lan0", "203.0.113.2/24"),
    )
    .unwrap();
    skiff_net::link_namespaces(
        end(&node1_net, "wan0", "198.51.100.1/24"),
        end(&outside_net, "eth0", "198.51.100.2/24"),
    )
    .unwrap();
    let cluster = Cidr::parse("10.244.0.0/16").unwrap();
    let (cidr1, cidr2) = (
        Cidr::parse("10.244.11.0/24").unwrap(),
        Cidr::parse("10.244.12.0/24").unwrap(),
    );
    let net1 = PodNetwork::new(n1.clone(), "skiff0", cidr1, dir.join("ipam1"));
    let net2 = PodNetwork::new(n2.clone(), "skiff0", cidr2, dir.join("ipam2"));
    net1.ensure_bridge().unwrap();
    net2.ensure_bridge().unwrap();
    let a = net1.attach("default/pod-a", &pod_a.net()).unwrap();
    let b = net2.attach("default/pod-b", &pod_b.net()).unwrap();
    for n in [&n1, &n2] {
        skiff_net::sysctl::write(n, "net/ipv4/ip_forward", "1").unwrap();
        skiff_net::egress::ensure_egress(n, cluster).unwrap();
    }
    serve_peer_address(pod_b.net());
    serve_peer_address(outside.net());
    assert!(!ping(&pod_a, b), "no route yet");

    let mut routes1 = skiff_net::PodRoutes::new(n1.clone(), skiff_net::Backend::HostGw);
    let mut routes2 = skiff_net::PodRoutes::new(n2.clone(), skiff_net::Backend::HostGw);
    let via = |subnet: Cidr, node: &str| {
        std::collections::BTreeMap::from([(subnet, node.parse().unwrap())])
    };
    routes1.sync(&via(cidr2, "203.0.113.2")).unwrap();
    routes2.sync(&via(cidr1, "203.0.113.1")).unwrap();
    routes1.sync(&via(cidr2, "203.0.113.2")).unwrap(); // idempotent
    assert!(
        n1.ip(&["route", "show", "proto", "83"])
            .unwrap()
            .contains("10.244.12.0/24 via 203.0.113.2")
    );
    assert!(ping(&pod_a, b), "pod a reaches pod b on the other node");
    // Between pods the addresses stay the pods' own; to the outside, the node's.
    assert_eq!(seen_as(&pod_a.net(), b).unwrap(), a.to_string());
    assert_eq!(
        seen_as(&pod_a.net(), "198.51.100.2".parse().unwrap()).unwrap(),
        "198.51.100.1"
    );

    // A node that goes takes its route with it.
    routes1.sync(&std::collections::BTreeMap::new()).unwrap();
    assert!(
        !n1.ip(&["route", "show", "proto", "83"])
            .unwrap()
            .contains("10.244.12.0/24")
    );
    assert!(!ping(&pod_a, b));
    skiff_net::egress::remove_egress(&n1).unwrap();
    assert_eq!(
        skiff_net::nftables::list(&n1, "ip", "skiff-pods").unwrap(),
        None
    );
}

#[test]
fn pods_on_nodes_without_a_shared_link_reach_each_other_over_vxlan() {
    skiff_e2e::assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ([router, node2, node1, pod_b, pod_a], _cleanup) =
        namespaces(dir, ["router", "node2", "node1", "pod-b", "pod-a"]);
    // Each node on its own subnet, a router between them (documentation addresses, inside
    // these namespaces only): the nodes reach each other, but share no link.
    let (node1_net, node2_net, router_net) = (node1.net(), node2.net(), router.net());
    let end = |netns, link, address| skiff_net::End {
        netns,
        link,
        address,
    };
    skiff_net::link_namespaces(
        end(&node1_net, "eth0", "203.0.113.1/24"),
        end(&router_net, "net1", "203.0.113.254/24"),
    )
    .unwrap();
    skiff_net::link_namespaces(
        end(&node2_net, "eth0", "198.51.100.2/24"),
        end(&router_net, "net2", "198.51.100.254/24"),
    )
    .unwrap();
    let (n1, n2, r) = (
        Netns::Path(node1.net()),
        Netns::Path(node2.net()),
        Netns::Path(router.net()),
    );
    skiff_net::sysctl::write(&r, "net/ipv4/ip_forward", "1").unwrap();
    n1.ip(&["route", "add", "198.51.100.0/24", "via", "203.0.113.254"])
        .unwrap();
    n2.ip(&["route", "add", "203.0.113.0/24", "via", "198.51.100.254"])
        .unwrap();
    let (node1_ip, node2_ip) = (
        "203.0.113.1".parse().unwrap(),
        "198.51.100.2".parse().unwrap(),
    );
    let (cidr1, cidr2) = (
        Cidr::parse("10.244.21.0/24").unwrap(),
        Cidr::parse("10.244.22.0/24").unwrap(),
    );

    // Direct routes cannot work here: the kernel refuses a gateway off every link.
    let mut direct = skiff_net::PodRoutes::new(n1.clone(), skiff_net::Backend::HostGw);
    let refused = direct
        .sync(&std::collections::BTreeMap::from([(cidr2, node2_ip)]))
        .unwrap_err();
    assert!(
        refused
            .to_string()
            .contains("routing 10.244.22.0/24 via 198.51.100.2"),
        "{refused}"
    );

    let vxlan1 = skiff_net::vxlan::ensure(&n1, node1_ip, cidr1).unwrap();
    let vxlan2 = skiff_net::vxlan::ensure(&n2, node2_ip, cidr2).unwrap();
    assert_eq!(
        vxlan1.mtu, 1450,
        "the underlay's 1500 less the encapsulation"
    );
    assert_eq!(
        skiff_net::vxlan::ensure(&n1, node1_ip, cidr1).unwrap(),
        vxlan1,
        "an unchanged link is kept (pods' traffic is not cut by an agent restart)"
    );
    let listing = n1.ip(&["-d", "link", "show", "skiff.vxlan"]).unwrap();
    assert!(
        listing.contains("vxlan id 1 local 203.0.113.1"),
        "{listing}"
    );
    assert!(listing.contains("dstport 8472 nolearning"), "{listing}");
    let net1 = PodNetwork::new(n1.clone(), "skiff0", cidr1, dir.join("ipam1")).with_mtu(vxlan1.mtu);
    let net2 = PodNetwork::new(n2.clone(), "skiff0", cidr2, dir.join("ipam2")).with_mtu(vxlan2.mtu);
    net1.ensure_bridge().unwrap();
    net2.ensure_bridge().unwrap();
    let a = net1.attach("default/pod-a", &pod_a.net()).unwrap();
    let b = net2.attach("default/pod-b", &pod_b.net()).unwrap();
    assert!(ip_in(&pod_a, &["link", "show", "eth0"]).contains("mtu 1450"));
    for n in [&n1, &n2] {
        skiff_net::sysctl::write(n, "net/ipv4/ip_forward", "1").unwrap();
    }
    serve_peer_address(pod_b.net());
    assert!(!ping(&pod_a, b), "no route yet");

    let mut routes1 = skiff_net::PodRoutes::new(n1.clone(), skiff_net::Backend::Vxlan(vxlan1));
    let mut routes2 = skiff_net::PodRoutes::new(n2.clone(), skiff_net::Backend::Vxlan(vxlan2));
    let via =
        |subnet: Cidr, node: std::net::Ipv4Addr| std::collections::BTreeMap::from([(subnet, node)]);
    routes1.sync(&via(cidr2, node2_ip)).unwrap();
    routes2.sync(&via(cidr1, node1_ip)).unwrap();
    routes1.sync(&via(cidr2, node2_ip)).unwrap(); // idempotent
    let route = n1.ip(&["route", "show", "proto", "83"]).unwrap();
    assert!(
        route.contains("10.244.22.0/24 via 10.244.22.0 dev skiff.vxlan")
            && route.contains("onlink"),
        "{route}"
    );
    assert!(
        ping(&pod_a, b),
        "pod a reaches pod b on the other node, through the tunnel"
    );
    assert_eq!(
        seen_as(&pod_a.net(), b).unwrap(),
        a.to_string(),
        "not translated"
    );
    // Frames for the peer's VTEP go in UDP to the peer's node address, through the router.
    let fdb = Command::new("nsenter")
        .arg(format!("--net={}", node1.net().display()))
        .args(["bridge", "fdb", "show", "dev", "skiff.vxlan"])
        .output()
        .unwrap();
    let fdb = String::from_utf8_lossy(&fdb.stdout);
    assert!(
        fdb.contains("0e:5f:0a:f4:16:00 dst 198.51.100.2 self permanent"),
        "{fdb}"
    );

    // A node that goes takes its route, ARP and forwarding entries with it.
    routes1.sync(&std::collections::BTreeMap::new()).unwrap();
    assert!(
        !n1.ip(&["route", "show", "proto", "83"])
            .unwrap()
            .contains("10.244.22.0")
    );
    assert!(
        !n1.ip(&["neigh", "show", "dev", "skiff.vxlan"])
            .unwrap()
            .contains("10.244.22.0")
    );
    assert!(!ping(&pod_a, b));
    skiff_net::vxlan::remove(&n1).unwrap();
    skiff_net::vxlan::remove(&n1).unwrap(); // idempotent
    assert!(n1.ip(&["link", "show", "skiff.vxlan"]).is_err());
}

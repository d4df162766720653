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

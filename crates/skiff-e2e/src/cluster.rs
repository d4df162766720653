//! A two-node cluster for end-to-end tests, entirely inside network namespaces the test
//! makes: a "lan" namespace holds a bridge that joins the machine (the API server and the
//! registry listen on its address there, 203.0.113.254), two node namespaces (each running
//! a real `skiff agent` *inside* it, at 203.0.113.1 and .2) and a client namespace outside
//! the cluster (203.0.113.100); LoadBalancers get addresses of the lan from a pool
//! (203.0.113.200–209), which the nodes answer for. The addresses exist only on these links; nothing is routed
//! off the machine. Dropping it stops the agents, wipes what they ran, and removes the
//! namespaces and the machine's end of the lan.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skiff_net::Netns;
use skiff_runtime::sandbox::Sandbox;

use crate::{Options, TestServer};

/// The machine's address on the lan: where the API server and the registry listen.
pub const HOST_IP: &str = "203.0.113.254";
/// The nodes, with their addresses.
pub const NODES: [(&str, &str); 2] = [("node-a", "203.0.113.1"), ("node-b", "203.0.113.2")];
/// LoadBalancer addresses, on the lan: one node answers for each (ARP).
pub const LB_POOL: &str = "203.0.113.200-203.0.113.209";
/// The client outside the cluster.
pub const CLIENT_IP: &str = "203.0.113.100";
/// The machine's end of its link to the lan.
const HOST_LINK: &str = "skiffh0";

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub struct TwoNodes {
    agents: Vec<Agent>,
    /// Each node's namespace and data directory, by name.
    pub nodes: Vec<(String, Sandbox, PathBuf)>,
    pub client: Sandbox,
    lan: Sandbox,
    _tmp: tempfile::TempDir,
    pub server: TestServer,
}

/// A veth from `from` (its end `name`, with `address` if given) into the lan namespace,
/// whose end goes on the bridge.
fn join_lan(from: &Netns, name: &str, address: Option<&str>, lan: &Path, lan_end: &str) {
    let lan_path = lan.display().to_string();
    from.ip(&[
        "link", "add", name, "type", "veth", "peer", "name", lan_end, "netns", &lan_path,
    ])
    .unwrap();
    if let Some(address) = address {
        from.ip(&["addr", "add", address, "dev", name]).unwrap();
    }
    from.ip(&["link", "set", name, "up"]).unwrap();
    let lan = Netns::Path(lan.to_path_buf());
    lan.ip(&["link", "set", lan_end, "master", "br0", "up"])
        .unwrap();
}

impl TwoNodes {
    pub fn start() -> TwoNodes {
        crate::assert_root();
        let tmp = tempfile::tempdir().unwrap();
        let lan = Sandbox::at(tmp.path().join("lan"));
        lan.create("lan").unwrap();
        let lan_ns = Netns::Path(lan.net());
        lan_ns
            .ip(&["link", "add", "br0", "type", "bridge"])
            .unwrap();
        lan_ns.ip(&["link", "set", "br0", "up"]).unwrap();
        // The machine's end: only the lan's /24 goes there.
        let _ = Netns::Current.ip(&["link", "del", HOST_LINK]);
        join_lan(
            &Netns::Current,
            HOST_LINK,
            Some(&format!("{HOST_IP}/24")),
            &lan.net(),
            "host",
        );
        let client = Sandbox::at(tmp.path().join("client"));
        client.create("client").unwrap();
        join_lan(
            &Netns::Path(client.net()),
            "eth0",
            Some(&format!("{CLIENT_IP}/24")),
            &lan.net(),
            "client",
        );
        let server = TestServer::start_with(Options {
            bind_address: Some(HOST_IP.parse().unwrap()),
            lb_address_pool: Some(skiff_controllers::AddressPool::parse(LB_POOL).unwrap()),
            ..Options::default()
        });
        crate::node::push_busybox(&server);
        let mut nodes = Vec::new();
        let mut agents = Vec::new();
        for (name, ip) in NODES {
            let netns = Sandbox::at(tmp.path().join(name));
            netns.create(name).unwrap();
            let node_ns = Netns::Path(netns.net());
            join_lan(
                &node_ns,
                "eth0",
                Some(&format!("{ip}/24")),
                &lan.net(),
                name,
            );
            // A default route that leads nowhere past the lan (no one answers for .253).
            node_ns
                .ip(&["route", "add", "default", "via", "203.0.113.253"])
                .unwrap();
            let data = tmp.path().join(format!("{name}-data"));
            std::fs::create_dir_all(&data).unwrap();
            std::fs::write(
                data.join("registries.yaml"),
                "disable_default_endpoint: true\n",
            )
            .unwrap();
            agents.push(start_agent(&server, name, ip, &netns.net(), &data));
            nodes.push((name.to_string(), netns, data));
        }
        for (name, _) in NODES {
            crate::node::await_ready(&server, name, Duration::from_secs(40));
        }
        TwoNodes {
            agents,
            nodes,
            client,
            lan,
            _tmp: tmp,
            server,
        }
    }
}

/// `skiff agent` run inside the node's namespace (its own address, its pod CIDR from the
/// server), with the kubeconfig pointing at the API server on the lan.
fn start_agent(server: &TestServer, name: &str, ip: &str, netns: &Path, data: &Path) -> Agent {
    let child = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .arg(crate::skiff_binary())
        .args([
            "agent",
            "--node-name",
            name,
            "--node-ip",
            ip,
            "--kubelet-address",
            ip,
            "--kubelet-port",
            "0",
            "--resolv-conf",
        ])
        .arg(crate::node::resolv_conf(data))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Agent(child)
}

impl Drop for TwoNodes {
    fn drop(&mut self) {
        self.agents.clear();
        for (_, netns, data) in &self.nodes {
            if let Err(e) = skiff_agent::kubelet::wipe(data, Path::new("runc")) {
                eprintln!("cleaning up a node: {e}");
            }
            let _ = netns.remove();
        }
        let _ = self.client.remove();
        let _ = Netns::Current.ip(&["link", "del", HOST_LINK]);
        let _ = self.lan.remove();
    }
}

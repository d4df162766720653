//! A node for end-to-end tests: a test server with busybox in its registry and a `skiff
//! agent` process joined to it as `node-1`, whose pod bridge lives in a network namespace the
//! test made (no uplink), so pods are reached only from inside it. Dropping it stops the
//! agent and removes whatever the node still runs or holds mounted.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use skiff_image::build::{BuiltImage, Compression};
use skiff_runtime::sandbox::Sandbox;

use crate::{TestServer, eventually};

pub const NODE: &str = "node-1";
/// The node's address inside its network namespace, reported as its ExternalIP.
pub const NODE_EXTERNAL_IP: &str = "203.0.113.1";
const APPLETS: &[&str] = &[
    "sh", "httpd", "sleep", "cat", "echo", "wget", "hostname", "kill", "dd", "tty", "stty", "wc",
    "tar", "mkdir", "id", "touch", "nslookup",
];

/// busybox (Debian's static build) as `busybox:1.36` in the cluster's registry.
pub fn push_busybox(server: &TestServer) {
    let layer = crate::images::busybox_layer_builder(APPLETS)
        .dir("tmp/")
        .dir("etc/")
        .file("etc/motd", b"hello from skiff\n", 0o644);
    let run = skiff_oci::manifest::RunConfig {
        env: Some(vec!["PATH=/bin".into()]),
        cmd: Some(vec!["sh".into()]),
        ..Default::default()
    };
    let image = BuiltImage::new(
        vec![layer.finish(Compression::Gzip)],
        run,
        &skiff_oci::Platform::current(),
    );
    let client = skiff_image::RegistryClient::new(Default::default());
    let endpoint = skiff_image::Endpoint::new(&format!("http://{}", server.registry));
    let creds = skiff_image::Credentials {
        username: "skiff".into(),
        password: server.token().into(),
    };
    let repo = client.repository(&endpoint, "library/busybox", Some(creds), true);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(image.push(&repo, "1.36"))
        .unwrap();
}

/// Where the node's DNS forwards names outside the cluster: port 53 of the node
/// namespace's own address. Nothing listens there unless a test serves it.
pub const UPSTREAM_DNS: &str = NODE_EXTERNAL_IP;

/// The node's resolv.conf, naming only [`UPSTREAM_DNS`].
pub(crate) fn resolv_conf(data: &Path) -> PathBuf {
    let path = data.join("resolv.conf");
    std::fs::write(
        &path,
        format!("nameserver {UPSTREAM_DNS}\nsearch node.test\n"),
    )
    .unwrap();
    path
}

/// A `skiff agent` process for this machine as `node-1`.
struct Agent {
    child: Child,
}

fn start_agent(server: &TestServer, data: &Path, netns: &Path, runtime: &str) -> Agent {
    let child = Command::new(crate::skiff_binary())
        .args([
            "agent",
            "--runtime",
            runtime,
            "--node-name",
            NODE,
            "--pod-cidr",
            "10.244.1.0/24",
            "--node-ip",
            "127.0.0.1",
            // The node namespace's own address (see `Node::start`): what LoadBalancer
            // Services get as their external address.
            "--node-external-ip",
            NODE_EXTERNAL_IP,
            "--kubelet-address",
            "127.0.0.1",
            "--kubelet-port",
            "0",
            // Volumes follow their sources within seconds, for the tests that change them.
            "--sync-frequency",
            "3s",
            // Names outside the cluster go to the node namespace's own address, where a
            // test may serve them (see `UPSTREAM_DNS`); nothing is asked off the machine.
            "--resolv-conf",
        ])
        .arg(resolv_conf(data))
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--data-dir")
        .arg(data)
        .arg("--node-netns")
        .arg(netns)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    Agent { child }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until the Node `name` reports Ready.
pub fn await_ready(server: &TestServer, name: &str, within: Duration) {
    let kubectl = server.kubectl(33);
    let ready = "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}";
    eventually(&format!("node {name} is Ready"), within, || {
        let out = kubectl.run(&["get", "node", name, "-o", ready]);
        String::from_utf8_lossy(&out.stdout) == "True"
    });
}

/// The pod as `kubectl get -o json` has it, if it exists.
pub fn pod_json(server: &TestServer, name: &str) -> Option<Value> {
    let out = server.kubectl(33).run(&["get", "pod", name, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).unwrap())
}

/// The pods matching a label selector.
pub fn pods_of(server: &TestServer, selector: &str) -> Vec<Value> {
    let list = server
        .kubectl(33)
        .json(&["get", "pods", "-l", selector, "-o", "json"]);
    list["items"].as_array().unwrap().clone()
}

/// The events of the object named `name`, as `kubectl get events` prints them.
pub fn events_of(kubectl: &crate::Kubectl, name: &str) -> String {
    kubectl.ok(&[
        "get",
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ])
}

/// Whether the pod's first container has restarted at least once.
pub fn restarted(server: &TestServer, pod: &str) -> bool {
    pod_json(server, pod)
        .is_some_and(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1))
}

/// busybox wget from inside the node's network namespace.
pub fn http_get(netns: &Path, url: &str) -> Option<String> {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["timeout", "5", "busybox", "wget", "-q", "-O", "-", url])
        .output()
        .unwrap();
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The host PID of a container attempt's main process, as the agent recorded it.
pub fn container_pid(data: &Path, pod: &Value, container: &str, attempt: u32) -> i32 {
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let path: PathBuf = data
        .join("pods")
        .join(uid)
        .join("containers")
        .join(container)
        .join(attempt.to_string())
        .join("pid");
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// A test server with busybox in its registry and a ready `node-1` run by a `skiff agent`
/// whose pod bridge is in a namespace of the test's own.
pub struct Node {
    agent: Option<Agent>,
    /// The OCI runtime binary the agent runs containers with.
    pub runtime: &'static str,
    pub data: PathBuf,
    pub netns: Sandbox,
    _tmp: tempfile::TempDir,
    pub server: TestServer,
}

impl Node {
    pub fn start() -> Node {
        Node::start_with_runtime("runc")
    }

    pub fn start_with_runtime(runtime: &'static str) -> Node {
        crate::assert_root();
        let server = TestServer::start();
        let tmp = tempfile::tempdir().unwrap();
        let netns = Sandbox::at(tmp.path().join("node-ns"));
        netns.create("node-1").unwrap();
        // A default route, as a real node has, that leads nowhere: a veth pair inside the
        // namespace, where no one answers for the gateway's address. With it, the node's own connections to cluster IPs are
        // routed, and a Service without endpoints is refused by the proxy's rules rather
        // than by a missing route.
        let node_ns = skiff_net::Netns::Path(netns.net());
        for args in [
            &[
                "link", "add", "uplink0", "type", "veth", "peer", "name", "nowhere0",
            ][..],
            &[
                "addr",
                "add",
                &format!("{NODE_EXTERNAL_IP}/24"),
                "dev",
                "uplink0",
            ],
            &["link", "set", "uplink0", "up"],
            &["link", "set", "nowhere0", "up"],
            &["route", "add", "default", "via", "203.0.113.254"],
        ] {
            node_ns.ip(args).unwrap();
        }
        let data = tmp.path().join("agent");
        // Images come from the cluster's registry only: nothing is fetched off the machine,
        // even for a name that is not there.
        std::fs::create_dir_all(&data).unwrap();
        std::fs::write(
            data.join("registries.yaml"),
            "disable_default_endpoint: true\n",
        )
        .unwrap();
        push_busybox(&server);
        let agent = Some(start_agent(&server, &data, &netns.net(), runtime));
        await_ready(&server, NODE, Duration::from_secs(30));
        Node {
            agent,
            runtime,
            data,
            netns,
            _tmp: tmp,
            server,
        }
    }

    /// Waits until the API lists no pod in the default namespace.
    pub fn await_no_pods(&self) {
        let kubectl = self.server.kubectl(33);
        eventually("every pod is gone", Duration::from_secs(60), || {
            let list = kubectl.json(&["get", "pods", "-o", "json"]);
            list["items"].as_array().unwrap().is_empty()
        });
    }

    /// Waits until the node holds no pod directory or mount, then checks that its runtime
    /// runs no container and that the cgroups of the pods `uids` are gone (other tests'
    /// pods share the `/skiff` parent).
    pub fn assert_left_clean(&self, uids: &[String]) {
        let data = &self.data;
        eventually("the node is clean", Duration::from_secs(20), || {
            let pods_left = std::fs::read_dir(data.join("pods")).map_or(0, |d| d.count());
            pods_left == 0 && crate::mounts_under(data).is_empty()
        });
        let root = skiff_agent::kubelet::runtime_root(data, Path::new(self.runtime));
        let listed = Command::new(self.runtime)
            .arg("--root")
            .arg(root)
            .args(["list", "-q"])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "");
        for uid in uids {
            assert!(
                !skiff_runtime::cgroups::exists(&format!("/skiff/pod{uid}")),
                "the cgroup of pod {uid} is gone"
            );
        }
    }

    /// `kill -9` of the main process of `container`'s first run in `pod`, then waits until
    /// it runs again with restartCount 1.
    pub fn kill_and_await_restart(&self, pod: &Value, container: &str) {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let pid = container_pid(&self.data, pod, container, 0);
        Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        eventually(
            "the killed container restarts",
            Duration::from_secs(30),
            || {
                pod_json(&self.server, name).is_some_and(|p| {
                    let c = &p["status"]["containerStatuses"][0];
                    c["restartCount"] == 1 && c["state"]["running"].is_object()
                })
            },
        );
    }

    /// Kills the agent (as a crash or `kill -9` would): its containers keep running.
    pub fn stop_agent(&mut self) {
        self.agent = None;
    }

    pub fn restart_agent(&mut self) {
        self.agent = None;
        self.agent = Some(start_agent(
            &self.server,
            &self.data,
            &self.netns.net(),
            self.runtime,
        ));
    }
}

impl Drop for Node {
    /// A failed test leaves nothing running either.
    fn drop(&mut self) {
        self.agent = None;
        if let Err(e) = skiff_agent::kubelet::wipe(&self.data, Path::new(self.runtime)) {
            eprintln!("cleaning up the node: {e}");
        }
        let _ = self.netns.remove();
    }
}

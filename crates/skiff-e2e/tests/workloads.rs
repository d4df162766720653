//! Workloads end to end on simulated nodes, driven by real kubectl: deployments scaled,
//! rolled out, undone and deleted; the scheduler's placement and its failures; nodes that
//! die and the pods that move away from them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use serde_json::Value;
use skiff_e2e::{Kubectl, Options, SimulatedNodes, TestServer, eventually};

const WAIT: Duration = Duration::from_secs(60);

/// The pods of `app`: (name, phase, node, image, ready, deleting).
fn pods(k: &Kubectl, app: &str) -> Vec<(String, String, String, String, bool, bool)> {
    let list = k.json(&["get", "pods", "-l", &format!("app={app}")]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let ready = p["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "True");
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["status"]["phase"].as_str().unwrap_or("").to_string(),
                p["spec"]["nodeName"].as_str().unwrap_or("").to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap()
                    .to_string(),
                ready,
                p["metadata"]["deletionTimestamp"].is_string(),
            )
        })
        .collect()
}

/// Whether exactly `n` live pods of `app` run `image`, all Running and Ready.
fn running(k: &Kubectl, app: &str, n: usize, image: &str) -> bool {
    let live: Vec<_> = pods(k, app).into_iter().filter(|p| !p.5).collect();
    live.len() == n && live.iter().all(|p| p.1 == "Running" && p.4 && p.3 == image)
}

/// Watches the pods of `app` (through the API's watch, as any client would) and records
/// the most live pods and the fewest ready ones seen at any moment.
struct RolloutObserver {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<(usize, usize)>,
}

impl RolloutObserver {
    fn start(server: &TestServer, app: &str) -> Self {
        let kubeconfig = std::fs::read_to_string(server.kubeconfig()).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (synced_tx, synced_rx) = std::sync::mpsc::channel();
        let selector = format!("app={app}");
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let client = skiff_client::client_from_kubeconfig(&kubeconfig)
                    .await
                    .unwrap();
                let api = Api::<Pod>::namespaced(client, "default");
                let mut stream =
                    watcher::watcher(api, watcher::Config::default().labels(&selector)).boxed();
                let mut state: HashMap<String, (bool, bool)> = HashMap::new();
                let (mut synced, mut most_live, mut fewest_ready) = (false, 0, usize::MAX);
                while !stopping.load(Ordering::Relaxed) {
                    let Ok(Some(event)) =
                        tokio::time::timeout(Duration::from_millis(100), stream.next()).await
                    else {
                        continue;
                    };
                    match event.expect("the watch") {
                        Event::Apply(p) | Event::InitApply(p) => {
                            let deleting = p.metadata.deletion_timestamp.is_some();
                            let ready = skiff_client::objects::pod_is_ready(&p);
                            state.insert(
                                p.metadata.name.clone().unwrap(),
                                (!deleting, ready && !deleting),
                            );
                        }
                        Event::Delete(p) => {
                            state.remove(p.metadata.name.as_deref().unwrap());
                        }
                        Event::Init => {}
                        Event::InitDone => {
                            synced = true;
                            let _ = synced_tx.send(());
                        }
                    }
                    if synced {
                        most_live = most_live.max(state.values().filter(|s| s.0).count());
                        fewest_ready = fewest_ready.min(state.values().filter(|s| s.1).count());
                    }
                }
                (most_live, fewest_ready)
            })
        });
        synced_rx
            .recv_timeout(WAIT)
            .expect("the watch listed the pods");
        RolloutObserver { stop, thread }
    }

    /// (most live pods, fewest ready pods) seen while watching.
    fn finish(self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap()
    }
}

#[test]
fn hello_node_on_two_simulated_nodes() {
    let server = TestServer::start_with(Options {
        toleration_seconds: 2,
        node_monitor_grace_period: Duration::from_secs(4),
        ..Options::default()
    });
    let k = server.kubectl(33);
    let first = SimulatedNodes::start(&server, 2, "a-", 2);

    k.ok(&["create", "deployment", "hello", "--image=hello:v1"]);
    eventually("one pod Running", WAIT, || {
        running(&k, "hello", 1, "hello:v1")
    });

    k.ok(&["scale", "deployment", "hello", "--replicas=4"]);
    eventually("four pods Running", WAIT, || {
        running(&k, "hello", 4, "hello:v1")
    });
    let nodes: std::collections::HashSet<String> =
        pods(&k, "hello").into_iter().map(|p| p.2).collect();
    assert_eq!(
        nodes.len(),
        2,
        "the four pods spread over both nodes: {nodes:?}"
    );

    // A rolling update within maxSurge 1 and maxUnavailable 1 (25% of 4).
    let observer = RolloutObserver::start(&server, "hello");
    k.ok(&["set", "image", "deployment/hello", "hello=hello:v2"]);
    let status = k.ok(&["rollout", "status", "deployment/hello", "--timeout=60s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    eventually("four v2 pods", WAIT, || running(&k, "hello", 4, "hello:v2"));
    let (most_live, fewest_ready) = observer.finish();
    assert!(
        most_live <= 5,
        "at most replicas + maxSurge pods at once, saw {most_live}"
    );
    assert!(
        fewest_ready >= 3,
        "at least replicas - maxUnavailable ready at once, saw {fewest_ready}"
    );

    let d = k.json(&["get", "deployment", "hello"]);
    assert_eq!(
        d["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
        "2"
    );
    let available = deployment_condition(&k, "hello", "Available");
    assert_eq!(available["status"], "True");
    assert_eq!(available["reason"], "MinimumReplicasAvailable");

    k.ok(&["rollout", "undo", "deployment/hello"]);
    k.ok(&["rollout", "status", "deployment/hello", "--timeout=60s"]);
    eventually("four v1 pods again", WAIT, || {
        running(&k, "hello", 4, "hello:v1")
    });
    let history = k.ok(&["rollout", "history", "deployment/hello"]);
    let revisions: Vec<&str> = history
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        revisions,
        ["2", "3"],
        "the undone revision comes back as 3:\n{history}"
    );

    let events = k.ok(&["events", "--for", "deployment/hello"]);
    assert!(events.contains("ScalingReplicaSet"), "{events}");

    // Deleting the deployment takes its ReplicaSets and pods with it.
    k.ok(&["delete", "deployment", "hello"]);
    eventually("the ReplicaSets and pods gone", WAIT, || {
        k.json(&["get", "replicasets"])["items"]
            .as_array()
            .unwrap()
            .is_empty()
            && k.json(&["get", "pods"])["items"]
                .as_array()
                .unwrap()
                .is_empty()
    });

    // Nodes that stop reporting: NotReady, and their pods recreated on other nodes.
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=web:v1",
        "--replicas=3",
    ]);
    eventually("three web pods", WAIT, || running(&k, "web", 3, "web:v1"));
    let second = SimulatedNodes::start(&server, 2, "b-", 2);
    first.kill();
    eventually("the first nodes NotReady", WAIT, || {
        let nodes = k.json(&["get", "nodes"]);
        nodes["items"].as_array().unwrap().iter().all(|n| {
            let name = n["metadata"]["name"].as_str().unwrap();
            let ready = n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()["status"]
                .clone();
            if name.starts_with("a-") {
                ready == "Unknown"
            } else {
                ready == "True"
            }
        })
    });
    eventually("the unreachable taint on the first nodes", WAIT, || {
        k.ok(&["get", "node", "a-0", "-o", "jsonpath={.spec.taints[*].key}"])
            .contains("node.kubernetes.io/unreachable")
    });
    eventually("the web pods running on the second nodes", WAIT, || {
        let live: Vec<_> = pods(&k, "web").into_iter().filter(|p| !p.5).collect();
        live.len() == 3
            && live
                .iter()
                .all(|p| p.2.starts_with("b-") && p.1 == "Running")
    });
    let events = k.ok(&["get", "events"]);
    assert!(events.contains("NodeNotReady"), "{events}");
    assert!(events.contains("TaintManagerEviction"), "{events}");
    drop(second);
}

#[test]
fn unschedulable_pods_say_why_and_are_placed_when_a_node_fits() {
    let server = TestServer::start();
    let k = server.kubectl(30);
    let _nodes = SimulatedNodes::start(&server, 2, "n-", 40);
    let pod = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "picky"},
        "spec": {"nodeSelector": {"disk": "ssd"}, "containers": [{"name": "c", "image": "x"}]}}"#;
    k.ok_stdin(&["create", "-f", "-"], pod);
    let message = "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector.";
    eventually("PodScheduled=False with upstream's message", WAIT, || {
        let p = k.json(&["get", "pod", "picky"]);
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| {
                c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable"
                    && c["message"] == message
            })
    });
    let described = k.ok(&["describe", "pod", "picky"]);
    assert!(described.contains("FailedScheduling"), "{described}");

    let big = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "big"},
        "spec": {"containers": [{"name": "c", "image": "x", "resources": {"requests": {"cpu": "64"}}}]}}"#;
    k.ok_stdin(&["create", "-f", "-"], big);
    assert_eq!(
        k.json(&["get", "pod", "big"])["status"]["qosClass"],
        "Burstable"
    );
    assert_eq!(
        k.json(&["get", "pod", "picky"])["status"]["qosClass"],
        "BestEffort"
    );
    eventually("big is unschedulable for cpu", WAIT, || {
        k.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=big",
        ])
        .contains("2 Insufficient cpu")
    });

    // A node that comes to fit: the pod is retried and placed there.
    k.ok(&["label", "node", "n-1", "disk=ssd"]);
    eventually("picky bound to n-1 and running", WAIT, || {
        let p = k.json(&["get", "pod", "picky"]);
        p["spec"]["nodeName"] == "n-1" && p["status"]["phase"] == "Running"
    });
    let events = k.ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.name=picky",
    ]);
    assert!(
        events.contains("Successfully assigned default/picky to n-1"),
        "{events}"
    );

    // A cordoned node and a taint keep new pods away.
    k.ok(&["cordon", "n-0"]);
    k.ok(&["taint", "node", "n-1", "dedicated=gpu:NoSchedule"]);
    k.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "plain"},
        "spec": {"containers": [{"name": "c", "image": "x"}]}}"#,
    );
    let expected = "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}, 1 node(s) were unschedulable.";
    eventually("plain is unschedulable for both reasons", WAIT, || {
        let p = k.json(&["get", "pod", "plain"]);
        p["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["message"] == expected)
    });
}

#[test]
fn replicasets_adopt_release_and_cascade() {
    let server = TestServer::start();
    // (kubectl 1.28 validates `create -f` against OpenAPI v2 in protobuf, not served yet.)
    let k = server.kubectl(29);
    let _nodes = SimulatedNodes::start(&server, 1, "n-", 40);
    // An orphan pod that matches is adopted instead of a new one being made.
    k.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stray", "labels": {"app": "rs"}},
        "spec": {"containers": [{"name": "c", "image": "x"}]}}"#,
    );
    k.ok_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "rs"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "rs"}},
          "template": {"metadata": {"labels": {"app": "rs"}},
            "spec": {"containers": [{"name": "c", "image": "x"}]}}}}"#,
    );
    eventually("two ready replicas", WAIT, || {
        let rs = k.json(&["get", "rs", "rs"]);
        rs["status"]["readyReplicas"] == 2 && rs["status"]["availableReplicas"] == 2
    });
    let stray = k.json(&["get", "pod", "stray"]);
    assert_eq!(
        stray["metadata"]["ownerReferences"][0]["name"], "rs",
        "adopted"
    );
    assert_eq!(pods(&k, "rs").len(), 2);

    // Relabelled: released, and replaced.
    k.ok(&["label", "pod", "stray", "app=gone", "--overwrite"]);
    eventually("stray released and replaced", WAIT, || {
        let stray = k.json(&["get", "pod", "stray"]);
        stray["metadata"]["ownerReferences"].is_null()
            && pods(&k, "rs").iter().filter(|p| !p.5).count() == 2
    });

    // Orphan: the ReplicaSet goes, its pods stay, without owner.
    k.ok(&["delete", "rs", "rs", "--cascade=orphan"]);
    eventually("pods orphaned", WAIT, || {
        let list = pods(&k, "rs");
        list.len() == 2
            && list
                .iter()
                .all(|p| k.json(&["get", "pod", &p.0])["metadata"]["ownerReferences"].is_null())
    });

    // Foreground: the owner waits for its dependents, then goes.
    k.ok(&["create", "deployment", "fg", "--image=x", "--replicas=2"]);
    eventually("fg running", WAIT, || running(&k, "fg", 2, "x"));
    k.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--timeout=60s",
    ]);
    assert!(
        pods(&k, "fg").is_empty(),
        "foreground deletion returns after the pods are gone"
    );
    let rs: Value = k.json(&["get", "rs"]);
    assert!(rs["items"].as_array().unwrap().is_empty(), "{rs}");
}

#[test]
fn services_get_endpoints_and_slices_that_follow_readiness() {
    let server = TestServer::start();
    let k = server.kubectl(31);
    let _nodes = SimulatedNodes::start(&server, 2, "n-", 40);
    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=web:v1",
        "--replicas=3",
        "--port=8080",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ]);
    eventually("three web pods", WAIT, || running(&k, "web", 3, "web:v1"));
    let ips = |field: &str| -> Vec<String> {
        let ep = k.json(&["get", "endpoints", "web"]);
        let mut ips: Vec<String> = ep["subsets"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .map(|a| a["ip"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    let pod_ips = || -> Vec<String> {
        let mut ips: Vec<String> = k.json(&["get", "pods", "-l", "app=web"])["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    eventually("every pod an endpoint", WAIT, || {
        ips("addresses") == pod_ips()
    });
    let described = k.ok(&["describe", "service", "web"]);
    assert!(described.contains(":8080"), "{described}");

    // A pod that stops being ready moves to notReadyAddresses, and its slice says so.
    let pod = pods(&k, "web")[0].0.clone();
    // (Simulated nodes take their pods' readiness from an annotation, as a real node from a
    // readiness probe.)
    k.ok(&["annotate", "pod", &pod, "skiff.dev/simulated-ready=false"]);
    eventually(
        "the pod not ready in Endpoints",
        Duration::from_secs(5),
        || ips("notReadyAddresses").len() == 1,
    );
    let slices = k.json(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let slice = &slices["items"][0];
    assert_eq!(slice["addressType"], "IPv4");
    assert_eq!(slice["ports"][0]["port"], 8080);
    let not_ready: Vec<&Value> = slice["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["conditions"]["ready"] == false)
        .collect();
    assert_eq!(not_ready.len(), 1, "{slice}");
    assert_eq!(not_ready[0]["targetRef"]["name"], pod.as_str());

    // Scaled: the endpoints follow.
    k.ok(&["scale", "deployment", "web", "--replicas=5"]);
    eventually("five endpoints", WAIT, || {
        ips("addresses").len() + ips("notReadyAddresses").len() == 5
    });
}

/// The spec.replicas of a deployment's ReplicaSets, by image.
fn replicas_by_image(k: &Kubectl, app: &str) -> HashMap<String, i64> {
    // Summed: a restart leaves two ReplicaSets with the same image.
    let mut by_image = HashMap::new();
    for rs in k.json(&["get", "rs", "-l", &format!("app={app}")])["items"]
        .as_array()
        .unwrap()
    {
        let image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_string();
        *by_image.entry(image).or_insert(0) += rs["spec"]["replicas"].as_i64().unwrap();
    }
    by_image
}

/// A deployment's condition of this type (Null when it has none).
fn deployment_condition(k: &Kubectl, name: &str, type_: &str) -> Value {
    let d = k.json(&["get", "deployment", name]);
    d["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or(Value::Null)
}

fn progressing_reason(k: &Kubectl, name: &str) -> String {
    deployment_condition(k, name, "Progressing")["reason"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn rollouts_pause_resume_restart_and_scale_proportionally() {
    let server = TestServer::start();
    let k = server.kubectl(32);
    let _nodes = SimulatedNodes::start(&server, 2, "n-", 40);
    k.ok(&[
        "create",
        "deployment",
        "app",
        "--image=app:v1",
        "--replicas=2",
    ]);
    eventually("two pods", WAIT, || running(&k, "app", 2, "app:v1"));

    // Paused: a template change makes no new ReplicaSet until resumed.
    k.ok(&["rollout", "pause", "deployment/app"]);
    eventually("Progressing says paused", WAIT, || {
        progressing_reason(&k, "app") == "DeploymentPaused"
    });
    k.ok(&["set", "image", "deployment/app", "app=app:v2"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        replicas_by_image(&k, "app").len(),
        1,
        "no rollout while paused"
    );
    k.ok(&["rollout", "resume", "deployment/app"]);
    k.ok(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    eventually("two v2 pods", WAIT, || running(&k, "app", 2, "app:v2"));

    // Restart: the same image, new pods (a new ReplicaSet through the restartedAt annotation).
    let before: Vec<String> = pods(&k, "app").into_iter().map(|p| p.0).collect();
    k.ok(&["rollout", "restart", "deployment/app"]);
    k.ok(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    eventually("two new pods", WAIT, || {
        let now = pods(&k, "app");
        now.iter().filter(|p| !p.5).count() == 2
            && now.iter().all(|p| !before.contains(&p.0) || p.5)
    });

    // A rollout stuck on pods that cannot be placed, then scaled: the ReplicaSets grow in
    // proportion (10 → 20 replicas with 25% surge: 8 old + 5 new become 15 + 10).
    k.ok(&["scale", "deployment", "app", "--replicas=10"]);
    k.ok(&["rollout", "status", "deployment/app", "--timeout=60s"]);
    k.ok(&["patch", "deployment", "app", "--type=strategic", "-p",
        r#"{"spec":{"template":{"spec":{"nodeSelector":{"disk":"none"},"containers":[{"name":"app","image":"app:v3"}]}}}}"#]);
    eventually("the rollout stuck at 8 old + 5 new", WAIT, || {
        let r = replicas_by_image(&k, "app");
        r.get("app:v2") == Some(&8) && r.get("app:v3") == Some(&5)
    });
    k.ok(&["scale", "deployment", "app", "--replicas=20"]);
    eventually("15 old + 10 new", WAIT, || {
        let r = replicas_by_image(&k, "app");
        r.get("app:v2") == Some(&15) && r.get("app:v3") == Some(&10)
    });
}

#[test]
fn recreate_replaces_every_pod_at_once() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let _nodes = SimulatedNodes::start(&server, 1, "n-", 40);
    k.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "rec"},
        "spec": {"replicas": 3, "strategy": {"type": "Recreate"},
          "selector": {"matchLabels": {"app": "rec"}},
          "template": {"metadata": {"labels": {"app": "rec"}},
            "spec": {"containers": [{"name": "c", "image": "rec:v1"}]}}}}"#,
    );
    eventually("three v1 pods", WAIT, || running(&k, "rec", 3, "rec:v1"));
    let observer = RolloutObserver::start(&server, "rec");
    k.ok(&["set", "image", "deployment/rec", "c=rec:v2"]);
    k.ok(&["rollout", "status", "deployment/rec", "--timeout=60s"]);
    eventually("three v2 pods", WAIT, || running(&k, "rec", 3, "rec:v2"));
    let (most_live, _) = observer.finish();
    assert!(
        most_live <= 3,
        "Recreate never runs old and new together, saw {most_live}"
    );
    assert_eq!(replicas_by_image(&k, "rec").get("rec:v1"), Some(&0));
}

#[test]
fn a_rollout_that_cannot_progress_exceeds_its_deadline() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let _nodes = SimulatedNodes::start(&server, 1, "n-", 40);
    k.ok_stdin(&["apply", "-f", "-"], r#"{"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "stuck"},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 2,
          "selector": {"matchLabels": {"app": "stuck"}},
          "template": {"metadata": {"labels": {"app": "stuck"}},
            "spec": {"nodeSelector": {"disk": "none"}, "containers": [{"name": "c", "image": "x"}]}}}}"#);
    eventually("Progressing=False ProgressDeadlineExceeded", WAIT, || {
        progressing_reason(&k, "stuck") == "ProgressDeadlineExceeded"
    });
    let err = k.fails(&["rollout", "status", "deployment/stuck", "--timeout=20s"]);
    assert!(err.contains("exceeded its progress deadline"), "{err}");
    let available = deployment_condition(&k, "stuck", "Available");
    assert_eq!(available["status"], "False");
    assert_eq!(available["reason"], "MinimumReplicasUnavailable");
}

/// The Ready condition's status of a node.
fn node_ready(k: &Kubectl, node: &str) -> String {
    k.ok(&[
        "get",
        "node",
        node,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
    ])
}

#[test]
fn a_frozen_node_that_resumes_has_its_pods_ready_again() {
    // A node silent past its grace period is marked Unknown and its pods not ready; when it
    // comes back its pods must be Ready again (the node writes their status back), not
    // left not ready until something else happens to them.
    let server = TestServer::start_with(Options {
        node_monitor_grace_period: Duration::from_secs(3),
        ..Options::default()
    });
    let k = server.kubectl(33);
    let agent = KilledOnDrop(
        std::process::Command::new(skiff_e2e::skiff_binary())
            .args([
                "agent",
                "--simulated-nodes",
                "1",
                "--node-name-prefix",
                "frozen-",
            ])
            .args(["--node-lease-duration-seconds", "2", "--kubeconfig"])
            .arg(server.kubeconfig())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start skiff agent"),
    );
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .args([sig, &agent.0.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {sig}");
    };
    eventually("the node Ready", WAIT, || {
        node_ready(&k, "frozen-0") == "True"
    });
    k.ok(&[
        "create",
        "deployment",
        "steady",
        "--image=steady:v1",
        "--replicas=3",
    ]);
    eventually("three pods Ready", WAIT, || {
        running(&k, "steady", 3, "steady:v1")
    });

    signal("-STOP");
    eventually("the frozen node Unknown", WAIT, || {
        node_ready(&k, "frozen-0") == "Unknown"
    });
    eventually("its pods not ready", WAIT, || {
        pods(&k, "steady").iter().all(|p| !p.4)
    });
    signal("-CONT");
    eventually(
        "the node and its pods Ready within 30 s",
        Duration::from_secs(30),
        || node_ready(&k, "frozen-0") == "True" && running(&k, "steady", 3, "steady:v1"),
    );
}

/// A child process killed (and reaped) when the test ends, passed or failed.
struct KilledOnDrop(std::process::Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

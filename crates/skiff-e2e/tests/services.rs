//! Services made reachable by the node's service proxy, end to end: real kubectl creates a
//! Deployment and exposes it; the agent's proxy programs nftables in the node's network
//! namespace (the test's own); pods reach the cluster IP, the node answers on the NodePort,
//! a LoadBalancer gets the node's external address, a Service without endpoints refuses
//! at once, and the rules follow scale-downs, type changes, deletes and agent restarts.

use std::time::Duration;

use skiff_e2e::eventually;
use skiff_e2e::node::{NODE_EXTERNAL_IP, Node, http_get, pods_of};
use skiff_net::{Netns, nftables};

/// What `count` fetches of `url` from inside `pod` answered, one line each (a failed fetch
/// prints `failed`).
fn fetch_from_pod(kubectl: &skiff_e2e::Kubectl, pod: &str, url: &str, count: usize) -> Vec<String> {
    let rounds = (0..count)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!("for i in {rounds}; do wget -q -O - {url} || echo failed; done");
    kubectl
        .ok(&["exec", pod, "--", "sh", "-c", &script])
        .lines()
        .map(str::to_string)
        .collect()
}

fn rule_names(node: &Node) -> std::collections::BTreeSet<String> {
    let listing = nftables::list(&Netns::Path(node.netns.net()), "ip", "skiff")
        .unwrap()
        .expect("the proxy's table");
    nftables::listed_names(&listing)
}

#[test]
fn exposed_deployments_answer_on_cluster_ips_and_node_ports() {
    let mut node = Node::start();
    let kubectl = node.server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "httpd",
                  "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                  "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1}}]}}}}"#,
    );
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    kubectl.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
        "--type",
        "LoadBalancer",
    ]);
    kubectl.ok(&["create", "service", "clusterip", "nothing", "--tcp", "80"]);
    let service = kubectl.json(&["get", "service", "web", "-o", "json"]);
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_i64().unwrap();
    let nothing_ip = kubectl.ok(&[
        "get",
        "service",
        "nothing",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let pods = pods_of(&node.server, "app=web");
    let names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let client = names[0].clone();
    let url = format!("http://{cluster_ip}/hostname");

    // Every pod is reached through the cluster IP (the client itself too: hairpin).
    eventually("the cluster IP answers", Duration::from_secs(20), || {
        fetch_from_pod(&kubectl, &client, &url, 1)[0] != "failed"
    });
    let answers = fetch_from_pod(&kubectl, &client, &url, 60);
    for name in &names {
        assert!(answers.contains(name), "{name} in {answers:?}");
    }
    assert!(!answers.iter().any(|a| a == "failed"), "{answers:?}");

    // The load balancer's address is the node's external one, as kubectl shows it.
    eventually(
        "the load balancer has an address",
        Duration::from_secs(20),
        || {
            let row = kubectl.ok(&["get", "service", "web", "--no-headers"]);
            row.split_whitespace().nth(3) == Some(NODE_EXTERNAL_IP)
        },
    );
    let events = skiff_e2e::node::events_of(&kubectl, "web");
    assert!(events.contains("EnsuredLoadBalancer"), "{events}");

    // The node answers on the NodePort, at any of its addresses, and on the load balancer's
    // address, and reaches the cluster IP itself.
    for url in [
        format!("http://{NODE_EXTERNAL_IP}/hostname"),
        format!("http://10.244.1.1:{node_port}/hostname"),
        format!("http://{NODE_EXTERNAL_IP}:{node_port}/hostname"),
        url.clone(),
    ] {
        let answer = http_get(&node.netns.net(), &url).unwrap_or_else(|| panic!("{url} answers"));
        assert!(names.contains(&answer.trim().to_string()), "{answer}");
    }

    // A Service without endpoints refuses at once.
    let refused = kubectl.run(&[
        "exec",
        &client,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{nothing_ip}/"),
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Connection refused"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The API server publishes its own address for the `kubernetes` Service, as an
    // EndpointSlice the proxy programs.
    let slice = kubectl.json(&["get", "endpointslice", "kubernetes", "-o", "json"]);
    assert_eq!(
        slice["endpoints"][0]["addresses"][0], "127.0.0.1",
        "{slice}"
    );
    assert_eq!(
        slice["metadata"]["labels"]["kubernetes.io/service-name"],
        "kubernetes"
    );

    // An agent restart rebuilds the same rules.
    let before = rule_names(&node);
    assert!(
        before.contains("service-default/kubernetes/tcp/https"),
        "{before:?}"
    );
    assert!(
        before
            .iter()
            .any(|n| n.starts_with("service-default/web/tcp/")),
        "{before:?}"
    );
    node.restart_agent();
    eventually(
        "the restarted proxy rebuilt the rules",
        Duration::from_secs(20),
        || {
            nftables::list(&Netns::Path(node.netns.net()), "ip", "skiff")
                .ok()
                .flatten()
                .is_some_and(|l| nftables::listed_names(&l) == before)
        },
    );

    // Scaled down to one: the others get no new connections.
    kubectl.ok(&["scale", "deployment", "web", "--replicas", "1"]);
    eventually(
        "only the remaining pod answers",
        Duration::from_secs(30),
        || {
            let Some(survivor) = pods_of(&node.server, "app=web")
                .iter()
                .find(|p| p["metadata"]["deletionTimestamp"].is_null())
                .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
            else {
                return false;
            };
            let answers = fetch_from_pod(&kubectl, &survivor, &url, 10);
            answers.iter().all(|a| *a == survivor)
        },
    );

    // No longer a LoadBalancer: the address goes.
    kubectl.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec": {"type": "NodePort"}}"#,
    ]);
    eventually(
        "the load balancer's address is released",
        Duration::from_secs(20),
        || {
            let status = kubectl.json(&["get", "service", "web", "-o", "json"]);
            status["status"]["loadBalancer"]
                .get("ingress")
                .is_none_or(|i| i.as_array().is_none_or(Vec::is_empty))
        },
    );

    // Deleted Services leave no rule behind.
    kubectl.ok(&["delete", "service", "web", "nothing"]);
    eventually("the rules are gone", Duration::from_secs(20), || {
        let names = rule_names(&node);
        !names
            .iter()
            .any(|n| n.contains("default/web/") || n.contains("default/nothing/"))
    });
    let listing = nftables::list(&Netns::Path(node.netns.net()), "ip", "skiff")
        .unwrap()
        .unwrap();
    assert!(!listing.contains(&cluster_ip), "{listing}");
}

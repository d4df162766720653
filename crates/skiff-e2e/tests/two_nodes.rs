//! Issue 14's acceptance on two real nodes (each `skiff agent` inside its own network
//! namespace, joined by a bridge the test makes; see `skiff_e2e::cluster`): a Deployment of
//! 4 replicas spread over both, reached through its ClusterIP from a pod evenly, through
//! the NodePort and the EXTERNAL-IP from a client outside the cluster, by name through the
//! cluster DNS, pod to pod across nodes, and rolled from v1 to v2 under a steady load
//! through the EXTERNAL-IP without one failed request.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use skiff_e2e::cluster::{CLIENT_IP, NODES, TwoNodes};
use skiff_e2e::eventually;
use skiff_e2e::node::pods_of;

/// GET `path` from `addr` on a fresh connection, from this thread's network namespace:
/// the body of a 200 answer, or why there was none.
fn get_here(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(conn, "GET {path} HTTP/1.0\r\n\r\n")?;
    let mut response = String::new();
    conn.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((head, body)) if head.contains(" 200 ") => Ok(body.trim().to_string()),
        _ => Err(std::io::Error::other(format!("answered {response:?}"))),
    }
}

/// [`get_here`] from inside `netns`.
fn get(netns: &std::path::Path, addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let (netns, path) = (netns.to_path_buf(), path.to_string());
    std::thread::spawn(move || {
        skiff_net::enter_netns(&netns).map_err(std::io::Error::other)?;
        get_here(addr, &path)
    })
    .join()
    .unwrap()
}

/// The Deployment: 4 replicas serving `version` at `/` and their name at `/hostname`,
/// ready when they listen; a leaving pod keeps serving for 2 s (preStop) while the nodes'
/// rules forget it, as upstream advises.
fn deployment(version: &str) -> String {
    format!(
        r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "hello-node"}},
        "spec": {{"replicas": 4, "selector": {{"matchLabels": {{"app": "hello-node"}}}},
          "template": {{"metadata": {{"labels": {{"app": "hello-node"}}}},
            "spec": {{"terminationGracePeriodSeconds": 10, "containers": [{{"name": "hello",
              "image": "busybox:1.36",
              "command": ["sh", "-c", "mkdir -p /tmp/www && echo {version} > /tmp/www/index.html && hostname > /tmp/www/hostname && exec httpd -f -p 8080 -h /tmp/www"],
              "readinessProbe": {{"tcpSocket": {{"port": 8080}}, "periodSeconds": 1}},
              "lifecycle": {{"preStop": {{"exec": {{"command": ["sleep", "2"]}}}}}}}}]}}}}}}}}"#
    )
}

#[test]
fn services_work_across_two_nodes() {
    let cluster = TwoNodes::start();
    let kubectl = cluster.server.kubectl(33);
    kubectl.ok_stdin(&["apply", "-f", "-"], &deployment("v1"));
    kubectl.ok(&[
        "rollout",
        "status",
        "deployment/hello-node",
        "--timeout=90s",
    ]);
    kubectl.ok(&[
        "expose",
        "deployment",
        "hello-node",
        "--type",
        "LoadBalancer",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    let pods = pods_of(&cluster.server, "app=hello-node");
    let on_node = |node: &str| -> Vec<serde_json::Value> {
        pods.iter()
            .filter(|p| p["spec"]["nodeName"] == node)
            .cloned()
            .collect()
    };
    let (on_a, on_b) = (on_node(NODES[0].0), on_node(NODES[1].0));
    assert!(
        !on_a.is_empty() && !on_b.is_empty(),
        "spread over both nodes"
    );
    let names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let service = kubectl.json(&["get", "service", "hello-node", "-o", "json"]);
    let cluster_ip = service["spec"]["clusterIP"].as_str().unwrap().to_string();
    let node_port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap() as u16;
    let client_pod = on_a[0]["metadata"]["name"].as_str().unwrap().to_string();

    // Pod to pod across the nodes, by address.
    let b_ip = on_b[0]["status"]["podIP"].as_str().unwrap();
    let page = kubectl.ok(&[
        "exec",
        &client_pod,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{b_ip}:8080/hostname"),
    ]);
    assert_eq!(page.trim(), on_b[0]["metadata"]["name"]);
    // …through the VXLAN link (the agents' default `--pod-network`), not a direct route.
    let node_a = skiff_net::Netns::Path(cluster.nodes[0].1.net());
    let routes = node_a.ip(&["route", "show", "proto", "83"]).unwrap();
    assert!(routes.contains("dev skiff.vxlan"), "{routes}");

    // 400 requests to the ClusterIP from a pod reach all 4 replicas, none more than 40 %.
    let rounds = (0..400)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!(
        "for i in {rounds}; do wget -q -O - http://{cluster_ip}/hostname || echo failed; done"
    );
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    eventually(
        "every replica answers through the ClusterIP",
        Duration::from_secs(30),
        || {
            seen.clear();
            for line in kubectl
                .ok(&["exec", &client_pod, "--", "sh", "-c", &script])
                .lines()
            {
                *seen.entry(line.to_string()).or_insert(0) += 1;
            }
            names.iter().all(|n| seen.contains_key(n))
        },
    );
    eprintln!("spread: {seen:?}");
    assert!(!seen.contains_key("failed"), "{seen:?}");
    assert!(
        seen.values().all(|&n| n <= 160),
        "no replica over 40 %: {seen:?}"
    );

    // From outside the cluster: the NodePort on either node, and the EXTERNAL-IP.
    let client = cluster.client.net();
    let mut external_ip = String::new();
    eventually(
        "the load balancer has a pool address",
        Duration::from_secs(20),
        || {
            external_ip = kubectl.ok(&[
                "get",
                "service",
                "hello-node",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ]);
            external_ip.starts_with("203.0.113.20")
        },
    );
    for (_, node_ip) in NODES {
        let by_node_port = get(
            &client,
            format!("{node_ip}:{node_port}").parse().unwrap(),
            "/hostname",
        )
        .unwrap_or_else(|e| panic!("NodePort on {node_ip} from {CLIENT_IP}: {e}"));
        assert!(names.contains(&by_node_port), "{by_node_port}");
    }
    // The pool address is answered for on the lan by one of the nodes.
    let lb: SocketAddr = format!("{external_ip}:80").parse().unwrap();
    let mut by_lb = Err(std::io::Error::other("not asked yet"));
    eventually(
        "the EXTERNAL-IP answers from outside",
        Duration::from_secs(20),
        || {
            by_lb = get(&client, lb, "/hostname");
            by_lb.is_ok()
        },
    );
    let by_lb = by_lb.unwrap();
    assert!(names.contains(&by_lb), "{by_lb}");
    let holders: Vec<&str> = cluster
        .nodes
        .iter()
        .filter(|(_, netns, _)| {
            skiff_net::Netns::Path(netns.net())
                .ip(&["-o", "-4", "addr", "show"])
                .unwrap()
                .contains(&format!("inet {external_ip}/32"))
        })
        .map(|(name, _, _)| name.as_str())
        .collect();
    assert_eq!(
        holders.len(),
        1,
        "one node holds {external_ip}: {holders:?}"
    );

    // By name, from a pod on the other node, through its own node's DNS.
    let other_pod = on_b[0]["metadata"]["name"].as_str().unwrap().to_string();
    let by_name = kubectl.ok(&[
        "exec",
        &other_pod,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        "http://hello-node/hostname",
    ]);
    assert!(names.contains(&by_name.trim().to_string()), "{by_name}");

    // kubectl proxy's path reaches the app, whichever node its pod is on.
    let proxied = kubectl.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/hello-node:80/proxy/hostname",
    ]);
    assert!(names.contains(&proxied.trim().to_string()), "{proxied}");

    // A rolling update to v2 under a steady load of fresh connections from outside, through
    // the EXTERNAL-IP: no request fails, and afterwards every answer is v2.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (client, stop) = (client.clone(), stop.clone());
            std::thread::spawn(move || {
                skiff_net::enter_netns(&client).unwrap();
                let (mut answers, mut failures) = (Vec::new(), Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match get_here(lb, "/") {
                        Ok(body) => answers.push(body),
                        Err(e) => failures.push(e.to_string()),
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (answers, failures)
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    kubectl.ok_stdin(&["apply", "-f", "-"], &deployment("v2"));
    kubectl.ok(&[
        "rollout",
        "status",
        "deployment/hello-node",
        "--timeout=120s",
    ]);
    // Past the last old pod's preStop.
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut answers, mut failures) = (Vec::new(), Vec::new());
    for thread in load {
        let (a, f) = thread.join().unwrap();
        answers.extend(a);
        failures.extend(f);
    }
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the rollout: {:?}",
        failures.len(),
        answers.len() + failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        answers.iter().any(|a| a == "v1") && answers.iter().any(|a| a == "v2"),
        "the load spanned the rollout"
    );
    for _ in 0..20 {
        assert_eq!(get(&client, lb, "/").unwrap(), "v2");
    }
}

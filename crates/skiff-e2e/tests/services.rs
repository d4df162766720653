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

/// `kubectl proxy` on a free local port, asked for `path` once: the body.
fn kubectl_proxy_get(kubectl: &skiff_e2e::Kubectl, path: &str) -> String {
    use std::io::{BufRead, Read, Write};
    let mut proxy = kubectl
        .command(&["proxy", "--port", "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // "Starting to serve on 127.0.0.1:PORT"
    let mut line = String::new();
    std::io::BufReader::new(proxy.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(conn, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut response = String::new();
    conn.read_to_string(&mut response).unwrap();
    let _ = proxy.kill();
    let _ = proxy.wait();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

/// A Deployment `web` of `replicas` busybox HTTP servers on port 8080 (serving `/etc`, so
/// `/hostname` answers the pod's name), ready when they listen; waits for its rollout.
fn deploy_web(kubectl: &skiff_e2e::Kubectl, replicas: u32) {
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        &format!(
            r#"{{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {{"name": "web"}},
            "spec": {{"replicas": {replicas}, "selector": {{"matchLabels": {{"app": "web"}}}},
              "template": {{"metadata": {{"labels": {{"app": "web"}}}},
                "spec": {{"terminationGracePeriodSeconds": 1, "containers": [{{"name": "httpd",
                  "image": "busybox:1.36", "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                  "readinessProbe": {{"tcpSocket": {{"port": 8080}}, "periodSeconds": 1}}}}]}}}}}}}}"#
        ),
    );
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
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
    deploy_web(&kubectl, 3);
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

    // Every pod is reached through the cluster IP (the client itself too: hairpin), once
    // the endpoints have reached the node's rules.
    eventually(
        "every pod answers through the cluster IP",
        Duration::from_secs(20),
        || {
            let answers = fetch_from_pod(&kubectl, &client, &url, 30);
            names.iter().all(|n| answers.contains(n))
        },
    );
    let answers = fetch_from_pod(&kubectl, &client, &url, 60);
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

    // The API server's proxy reaches the Service, a pod and the node (what `kubectl proxy`
    // and the dashboard's links use).
    let via_service = kubectl.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:80/proxy/hostname",
    ]);
    assert!(
        names.contains(&via_service.trim().to_string()),
        "{via_service}"
    );
    let via_pod = kubectl.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/namespaces/default/pods/{client}:8080/proxy/hostname"),
    ]);
    assert_eq!(via_pod.trim(), client);
    let healthz = kubectl.ok(&[
        "get",
        "--raw",
        &format!("/api/v1/nodes/{}/proxy/healthz", skiff_e2e::node::NODE),
    ]);
    assert_eq!(healthz, "ok");
    let missing = kubectl.fails(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/nothing:80/proxy/",
    ]);
    assert!(
        missing.contains("no endpoints available for service"),
        "{missing}"
    );
    let through_kubectl_proxy = kubectl_proxy_get(
        &kubectl,
        "/api/v1/namespaces/default/services/web:80/proxy/hostname",
    );
    assert!(
        names.contains(&through_kubectl_proxy.trim().to_string()),
        "{through_kubectl_proxy}"
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

    // Keeping client addresses: the node answers health checks for the Service on its
    // healthCheckNodePort, with the count of its own endpoints.
    kubectl.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"spec": {"externalTrafficPolicy": "Local"}}"#,
    ]);
    let health_port = kubectl.ok(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.healthCheckNodePort}",
    ]);
    assert!(!health_port.is_empty(), "a health check port is allocated");
    let health_url = format!("http://{NODE_EXTERNAL_IP}:{health_port}/healthz");
    eventually(
        "the node answers the health check",
        Duration::from_secs(20),
        || {
            http_get(&node.netns.net(), &health_url).is_some_and(|body| {
                body.contains(r#""service":{"namespace":"default","name":"web"}"#)
                    && body.contains(r#""localEndpoints":1"#)
            })
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

/// An upstream resolver for the node's DNS to forward to: a DNS server for `example.test`
/// on the node namespace's own address (what the node's resolv.conf names).
fn serve_upstream(node: &Node) -> tokio::runtime::Runtime {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let www: k8s_openapi::api::core::v1::Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "www", "namespace": "web"},
        "spec": {"clusterIP": "198.51.100.80", "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap();
    let zone = skiff_dns::Zone::build("example.test", [&www], []).unwrap();
    let addr = format!("{}:53", skiff_e2e::node::UPSTREAM_DNS)
        .parse()
        .unwrap();
    let (udp, tcp) = skiff_dns::bind(addr, Some(&node.netns.net())).unwrap();
    let handler = skiff_dns::Handler::new(
        skiff_dns::CurrentZone::new(zone),
        skiff_dns::Forwarder::none(),
    );
    runtime.spawn(async move {
        let _ = runtime_serve(udp, tcp, handler).await;
    });
    runtime
}

async fn runtime_serve(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    handler: skiff_dns::Handler,
) -> std::io::Result<()> {
    skiff_dns::serve(udp, tcp, handler).await
}

#[test]
fn pods_resolve_services_headless_services_and_outside_names() {
    let node = Node::start();
    let _upstream = serve_upstream(&node);
    let kubectl = node.server.kubectl(33);
    deploy_web(&kubectl, 2);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web-pods"},
            "spec": {"clusterIP": "None", "selector": {"app": "web"},
                     "ports": [{"name": "http", "port": 8080}]}}"#,
    );
    kubectl.ok(&[
        "expose",
        "deployment",
        "web",
        "--port",
        "80",
        "--target-port",
        "8080",
    ]);
    let cluster_ip = kubectl.ok(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let pods = pods_of(&node.server, "app=web");
    let pod = pods[0]["metadata"]["name"].as_str().unwrap().to_string();
    let pod_ips: Vec<String> = pods
        .iter()
        .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
        .collect();

    // The pod's resolver: the cluster DNS, searching its namespace first, then the node's.
    let resolv = kubectl.ok(&["exec", &pod, "--", "cat", "/etc/resolv.conf"]);
    assert_eq!(
        resolv,
        "search default.svc.cluster.local svc.cluster.local cluster.local node.test\nnameserver 10.43.0.10\noptions ndots:5\n"
    );
    let lookup = |name: &str| kubectl.run(&["exec", &pod, "--", "nslookup", name]);
    eventually("the Service resolves", Duration::from_secs(20), || {
        String::from_utf8_lossy(&lookup("web.default.svc.cluster.local").stdout)
            .contains(&cluster_ip)
    });
    // By its short name, through the search path.
    let short = String::from_utf8_lossy(&lookup("web").stdout).into_owned();
    assert!(short.contains(&cluster_ip), "{short}");
    // The page, fetched by the Service's name.
    let names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap().to_string())
        .collect();
    let page = kubectl.ok(&[
        "exec",
        &pod,
        "--",
        "wget",
        "-q",
        "-O",
        "-",
        "http://web/hostname",
    ]);
    assert!(names.contains(&page.trim().to_string()), "{page}");
    // A headless Service answers its pods' addresses.
    eventually(
        "the headless Service lists both pods",
        Duration::from_secs(20),
        || {
            let out = String::from_utf8_lossy(&lookup("web-pods.default.svc.cluster.local").stdout)
                .into_owned();
            pod_ips.iter().all(|ip| out.contains(ip.as_str()))
        },
    );
    // A pod's dashed address.
    let dashed = format!("{}.default.pod.cluster.local", pod_ips[0].replace('.', "-"));
    let out = String::from_utf8_lossy(&lookup(&dashed).stdout).into_owned();
    assert!(out.contains(&pod_ips[0]), "{out}");
    // Names outside the cluster are forwarded to the node's resolver.
    let outside = String::from_utf8_lossy(&lookup("www.web.svc.example.test").stdout).into_owned();
    assert!(outside.contains("198.51.100.80"), "{outside}");
    // A name that does not exist.
    let missing = lookup("nothing.default.svc.cluster.local");
    assert!(!missing.status.success());

    // kubectl cluster-info lists the cluster DNS.
    let info = kubectl.ok(&["cluster-info"]);
    assert!(info.contains("KubeDNS is running at"), "{info}");
}

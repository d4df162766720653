//! A cluster with its own service range and node port range (`--service-cidr`,
//! `--service-node-port-range`), through real kubectl: the built-in Services sit at the
//! range's first and tenth addresses, new Services get addresses and ports from the
//! ranges, and asking for one outside them is refused with upstream's message.

use skiff_e2e::{Options, TestServer};

#[test]
fn services_take_addresses_and_ports_from_the_configured_ranges() {
    let server = TestServer::start_with(Options {
        service_network: skiff_apiserver::ServiceNetwork {
            cidr: ("10.96.0.0".parse().unwrap(), 16),
            node_ports: 31000..=31009,
        },
        ..Options::default()
    });
    let kubectl = server.kubectl(33);
    let ip_of = |ns: &str, name: &str| {
        kubectl.ok(&[
            "get",
            "service",
            "-n",
            ns,
            name,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
    };
    assert_eq!(ip_of("default", "kubernetes"), "10.96.0.1");
    assert_eq!(ip_of("kube-system", "kube-dns"), "10.96.0.10");

    kubectl.ok(&["create", "service", "nodeport", "web", "--tcp", "80"]);
    let service = kubectl.json(&["get", "service", "web", "-o", "json"]);
    let ip = service["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.96."), "{ip}");
    let port = service["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((31000..=31009).contains(&port), "{port}");

    let outside_ip = kubectl.fails_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a"},
            "spec": {"clusterIP": "10.43.0.50", "ports": [{"port": 80}]}}"#,
    );
    assert!(
        outside_ip.contains("the provided IP (10.43.0.50) is not in the valid range. The range of valid IPs is 10.96.0.0/16"),
        "{outside_ip}"
    );
    let outside_port = kubectl.fails_stdin(
        &["create", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "b"},
            "spec": {"type": "NodePort", "ports": [{"port": 80, "nodePort": 30080}]}}"#,
    );
    assert!(
        outside_port.contains(
            "provided port is not in the valid range. The range of valid ports is 31000-31009"
        ),
        "{outside_port}"
    );
}

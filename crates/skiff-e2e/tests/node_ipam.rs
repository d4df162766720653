//! Node IPAM through real kubectl: Nodes without a pod CIDR get the lowest free /24 of the
//! cluster CIDR (10.42.0.0/16 here, `skiff server`'s default), Nodes with their own keep
//! it, a deleted Node's subnet is handed out again, and a set pod CIDR cannot change.

use std::time::Duration;

use skiff_e2e::{TestServer, eventually};

fn create_node(kubectl: &skiff_e2e::Kubectl, name: &str, pod_cidr: Option<&str>) {
    let spec = match pod_cidr {
        Some(c) => format!(r#"{{"podCIDR": "{c}", "podCIDRs": ["{c}"]}}"#),
        None => "{}".into(),
    };
    kubectl.ok_stdin(
        &["create", "-f", "-"],
        &format!(r#"{{"apiVersion": "v1", "kind": "Node", "metadata": {{"name": "{name}"}}, "spec": {spec}}}"#),
    );
}

fn pod_cidr_of(kubectl: &skiff_e2e::Kubectl, name: &str) -> String {
    let mut cidr = String::new();
    eventually("the node has a pod CIDR", Duration::from_secs(20), || {
        cidr = kubectl.ok(&["get", "node", name, "-o", "jsonpath={.spec.podCIDR}"]);
        !cidr.is_empty()
    });
    let cidrs = kubectl.ok(&["get", "node", name, "-o", "jsonpath={.spec.podCIDRs[*]}"]);
    assert_eq!(cidrs, cidr);
    cidr
}

#[test]
fn nodes_get_pod_cidrs_once_each() {
    let server = TestServer::start();
    let kubectl = server.kubectl(33);
    create_node(&kubectl, "a", None);
    assert_eq!(pod_cidr_of(&kubectl, "a"), "10.42.0.0/24");
    create_node(&kubectl, "own", Some("10.42.1.0/24"));
    create_node(&kubectl, "b", None);
    assert_eq!(pod_cidr_of(&kubectl, "b"), "10.42.2.0/24");
    assert_eq!(pod_cidr_of(&kubectl, "own"), "10.42.1.0/24");

    let refused = kubectl.fails(&[
        "patch",
        "node",
        "a",
        "-p",
        r#"{"spec": {"podCIDR": "10.42.9.0/24", "podCIDRs": ["10.42.9.0/24"]}}"#,
    ]);
    assert!(
        refused.contains("node updates may not change podCIDR"),
        "{refused}"
    );

    kubectl.ok(&["delete", "node", "a"]);
    create_node(&kubectl, "c", None);
    assert_eq!(pod_cidr_of(&kubectl, "c"), "10.42.0.0/24");
}

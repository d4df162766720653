//! The built-in load balancer with an address pool (`--lb-address-pool`), through real
//! kubectl: one address per Service, kept, released on delete and on a type change, a
//! warning event when the pool is used up, and Services of another `loadBalancerClass`
//! left alone. No node is needed: addresses come from the pool.

use std::time::Duration;

use skiff_e2e::{Options, TestServer, eventually};

fn external_ip(kubectl: &skiff_e2e::Kubectl, name: &str) -> String {
    kubectl.ok(&[
        "get",
        "service",
        name,
        "-o",
        "jsonpath={.status.loadBalancer.ingress[*].ip}",
    ])
}

#[test]
fn pool_addresses_are_handed_out_once_and_given_back() {
    let server = TestServer::start_with(Options {
        lb_address_pool: Some(
            skiff_controllers::AddressPool::parse("198.51.100.100-198.51.100.101").unwrap(),
        ),
        ..Options::default()
    });
    let kubectl = server.kubectl(33);
    for name in ["one", "two"] {
        kubectl.ok(&["create", "service", "loadbalancer", name, "--tcp", "80"]);
        eventually("an address from the pool", Duration::from_secs(20), || {
            !external_ip(&kubectl, name).is_empty()
        });
    }
    let (one, two) = (external_ip(&kubectl, "one"), external_ip(&kubectl, "two"));
    let mut both = [one.clone(), two.clone()];
    both.sort();
    assert_eq!(both, ["198.51.100.100", "198.51.100.101"]);
    let row = kubectl.ok(&["get", "service", "one", "--no-headers"]);
    assert_eq!(row.split_whitespace().nth(3), Some(one.as_str()), "{row}");

    // The pool is used up: the third waits, with a warning saying why.
    kubectl.ok(&["create", "service", "loadbalancer", "three", "--tcp", "80"]);
    eventually("a warning about the pool", Duration::from_secs(20), || {
        skiff_e2e::node::events_of(&kubectl, "three").contains("SyncLoadBalancerFailed")
    });
    let events = skiff_e2e::node::events_of(&kubectl, "three");
    assert!(
        events.contains("no address left in the load-balancer pool 198.51.100.100-198.51.100.101"),
        "{events}"
    );
    assert_eq!(external_ip(&kubectl, "three"), "");

    // One goes: its address passes to the one waiting.
    kubectl.ok(&["delete", "service", "one"]);
    eventually(
        "the freed address is handed out",
        Duration::from_secs(10),
        || external_ip(&kubectl, "three") == one,
    );
    assert_eq!(external_ip(&kubectl, "two"), two, "kept");

    // A type change gives the address back.
    kubectl.ok(&[
        "patch",
        "service",
        "two",
        "-p",
        r#"{"spec": {"type": "ClusterIP"}}"#,
    ]);
    eventually("the address is released", Duration::from_secs(20), || {
        external_ip(&kubectl, "two").is_empty()
    });

    // Another class's balancer is not ours to answer.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "theirs"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other",
                     "ports": [{"port": 80}]}}"#,
    );
    kubectl.ok(&["create", "service", "loadbalancer", "four", "--tcp", "80"]);
    eventually(
        "the next one gets the free address",
        Duration::from_secs(20),
        || external_ip(&kubectl, "four") == two,
    );
    assert_eq!(external_ip(&kubectl, "theirs"), "");
}

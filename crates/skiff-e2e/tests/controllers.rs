//! The controllers inside a server, observed through real kubectl.

use std::time::{Duration, Instant};

use skiff_e2e::{TestServer, eventually};

#[test]
fn every_namespace_gets_a_default_service_account_back() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    k.ok(&["create", "namespace", "team"]);
    let has_default = || {
        k.run(&["get", "serviceaccount", "default", "-n", "team"])
            .status
            .success()
    };
    eventually(
        "the default service account",
        Duration::from_secs(20),
        has_default,
    );
    k.ok(&["delete", "serviceaccount", "default", "-n", "team"]);
    eventually(
        "the default service account's return",
        Duration::from_secs(20),
        has_default,
    );
    eventually(
        "default in the built-in namespaces",
        Duration::from_secs(20),
        || {
            k.run(&["get", "serviceaccount", "default", "-n", "kube-system"])
                .status
                .success()
        },
    );
}

/// `kubectl delete namespace` returns once the namespace and everything in it are gone, and
/// a namespace of the same name starts empty.
#[test]
fn deleting_a_namespace_deletes_its_contents() {
    let server = TestServer::start();
    for minor in [28, 33] {
        let k = server.kubectl(minor);
        let ns = format!("doomed-{minor}");
        k.ok(&["create", "namespace", &ns]);
        k.ok(&[
            "create",
            "configmap",
            "settings",
            "-n",
            &ns,
            "--from-literal=a=1",
        ]);
        k.ok(&["create", "deployment", "web", "-n", &ns, "--image=web:v1"]);
        k.ok(&[
            "create",
            "service",
            "clusterip",
            "web",
            "-n",
            &ns,
            "--tcp=80:8080",
        ]);
        let started = Instant::now();
        k.ok(&["delete", "namespace", &ns, "--timeout=60s"]);
        assert!(started.elapsed() < Duration::from_secs(60));
        let err = k.fails(&["get", "namespace", &ns]);
        assert!(err.contains("not found"), "{err}");
        k.ok(&["create", "namespace", &ns]);
        for kind in ["configmaps", "deployments", "services"] {
            let listed = k.ok(&["get", kind, "-n", &ns, "-o", "name"]);
            assert!(
                listed.trim().is_empty(),
                "kubectl 1.{minor}: {kind} survived: {listed}"
            );
        }
    }
}

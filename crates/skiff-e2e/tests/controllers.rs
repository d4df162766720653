//! The controllers inside a server, observed through real kubectl.

use std::time::{Duration, Instant};

use skiff_e2e::{TestServer, eventually};

/// The root CA publisher: every namespace holds the cluster CA, put back when deleted or
/// changed.
#[test]
fn every_namespace_gets_the_cluster_ca() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let ca = std::fs::read_to_string(server.ca_file()).unwrap();
    k.ok(&["create", "namespace", "team"]);
    let published = |ns: &str| {
        let out = k.run(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            ns,
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ]);
        out.status.success() && String::from_utf8_lossy(&out.stdout) == ca
    };
    for ns in ["team", "default", "kube-system"] {
        eventually("the cluster CA", Duration::from_secs(20), || published(ns));
    }
    k.ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "team"]);
    eventually("the CA back", Duration::from_secs(20), || published("team"));
    k.ok(&[
        "patch",
        "configmap",
        "kube-root-ca.crt",
        "-n",
        "team",
        "-p",
        r#"{"data": {"ca.crt": "forged"}}"#,
    ]);
    eventually("the CA restored", Duration::from_secs(20), || {
        published("team")
    });
}

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
            // The new namespace's own copy of the cluster CA may be there already.
            let survivors: Vec<&str> = listed
                .lines()
                .filter(|l| *l != "configmap/kube-root-ca.crt")
                .collect();
            assert!(
                survivors.is_empty(),
                "kubectl 1.{minor}: {kind} survived: {survivors:?}"
            );
        }
    }
}

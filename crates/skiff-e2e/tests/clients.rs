//! What real clients beyond kubectl's everyday commands send, tried as a new user would:
//! Helm 4's release lifecycle, metadata-only reads, the client-side → server-side apply
//! migration, response bodies as upstream writes them, kubectl 1.28's validation.

use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use skiff_e2e::TestServer;

const CHART_YAML: &str = "apiVersion: v2\nname: hello\nversion: 0.1.0\nappVersion: \"1\"\n";
const VALUES_YAML: &str = "replicas: 1\nmessage: hello\n";
const TEMPLATE: &str = r#"apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
data:
  message: {{ .Values.message | quote }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}-web
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}-web}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}-web}
    spec:
      containers:
      - name: web
        image: registry.local/hello:v1
---
apiVersion: v1
kind: Service
metadata:
  name: {{ .Release.Name }}-web
spec:
  selector: {app: {{ .Release.Name }}-web}
  ports:
  - port: 8080
"#;

fn succeeded(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Waits up to `limit` for `done`; answers whether it came.
fn eventually(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    done()
}

#[test]
fn helm_4_installs_upgrades_rolls_back_and_uninstalls_without_a_trace() {
    let server = TestServer::start();
    let kubectl = server.kubectl(33);
    let home = tempfile::tempdir().unwrap();
    let chart = home.path().join("hello");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(chart.join("Chart.yaml"), CHART_YAML).unwrap();
    std::fs::write(chart.join("values.yaml"), VALUES_YAML).unwrap();
    std::fs::write(chart.join("templates/app.yaml"), TEMPLATE).unwrap();
    let chart = chart.to_str().unwrap();
    let helm = |args: &[&str]| {
        succeeded(
            &format!("helm {args:?}"),
            server.helm(home.path(), args).output().expect("run helm"),
        )
    };

    helm(&["install", "demo", chart]);
    let message = |kubectl: &skiff_e2e::Kubectl| {
        kubectl.json(&["get", "configmap", "demo-config"])["data"]["message"].clone()
    };
    assert_eq!(message(&kubectl), "hello");

    helm(&[
        "upgrade",
        "demo",
        chart,
        "--set",
        "message=upgraded,replicas=2",
    ]);
    assert_eq!(message(&kubectl), "upgraded");
    let replicas = kubectl.json(&["get", "deployment", "demo-web"])["spec"]["replicas"].clone();
    assert_eq!(replicas, 2);

    helm(&["rollback", "demo", "1"]);
    assert_eq!(message(&kubectl), "hello");
    let history = helm(&["history", "demo", "-o", "json"]);
    let history: Value = serde_json::from_str(&history).expect("helm history JSON");
    assert_eq!(history.as_array().map(Vec::len), Some(3), "{history}");

    let uninstalled = helm(&["uninstall", "demo"]);
    assert!(uninstalled.contains("uninstalled"), "{uninstalled}");
    // The release's objects, its records (Secrets owned by helm) and, through the garbage
    // collector, the Deployment's ReplicaSets and pods are gone.
    let left = || {
        let names = |kind: &str, selector: Option<&str>| -> Vec<String> {
            let mut args = vec!["get", kind];
            args.extend(selector.map(|s| ["-l", s]).into_iter().flatten());
            let list = kubectl.json(&args);
            list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["metadata"]["name"].as_str().map(str::to_string))
                .collect()
        };
        let mut left = names("configmaps,deployments,services", None);
        left.retain(|n| n != "kube-root-ca.crt" && n != "kubernetes");
        left.extend(names("secrets", Some("owner=helm")));
        left.extend(names("replicasets,pods", Some("app=demo-web")));
        left
    };
    assert!(
        eventually(Duration::from_secs(30), || left().is_empty()),
        "left behind after helm uninstall: {:?}",
        left()
    );
}

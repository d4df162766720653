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

#[test]
fn bodies_are_written_as_kube_apiserver_writes_them() {
    let server = TestServer::start_api_only();
    // An error: upstream's field order, and a newline at the end.
    let missing = server
        .http("GET", "/api/v1/namespaces/default/pods/missing")
        .send();
    assert_eq!(missing.code, 404);
    let text = missing.body.clone();
    assert!(
        text.starts_with(r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods \"missing\" not found","reason":"NotFound","#),
        "{text}"
    );
    assert!(text.ends_with("\"code\":404}\n"), "{text:?}");

    // An object, created and read back, and a list: kind, apiVersion, metadata, then the
    // kind's own fields in its Go struct's order.
    let created = server
        .http("POST", "/api/v1/namespaces/default/services")
        .json(&serde_json::json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "x"}},
                                  "metadata": {"name": "web"}, "kind": "Service", "apiVersion": "v1"}))
        .send();
    assert_eq!(created.code, 201);
    for text in [
        created.body,
        server
            .http("GET", "/api/v1/namespaces/default/services/web")
            .send()
            .body,
    ] {
        assert!(text.starts_with(r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"web","namespace":"default","uid":"#), "{text}");
        assert!(text.contains(r#""spec":{"ports":[{"protocol":"TCP","port":80,"targetPort":80}],"selector":{"app":"x"},"clusterIP":"#), "{text}");
        assert!(text.ends_with("}\n"), "{text:?}");
        assert!(text.find("\"spec\"") < text.find("\"status\""), "{text}");
    }
    let list = server
        .http("GET", "/api/v1/namespaces/default/services")
        .send();
    let text = list.body;
    assert!(
        text.starts_with(
            r#"{"kind":"ServiceList","apiVersion":"v1","metadata":{"resourceVersion":"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"{"kind":"Service","apiVersion":"v1","metadata":{"name":"#),
        "{text}"
    );
    assert!(text.ends_with("]}\n"), "{text:?}");
}

#[test]
fn metadata_only_reads_answer_in_json_and_protobuf() {
    use futures_util::StreamExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, ListParams};
    let server = TestServer::start_api_only();
    let kubectl = server.kubectl(33);
    kubectl.ok(&[
        "create",
        "configmap",
        "meta-a",
        "--from-literal=big=payload",
    ]);
    kubectl.ok(&["label", "configmap", "meta-a", "tier=web"]);

    // kube-rs's metadata API (client-go's metadata client asks the same way).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let config = skiff_client::config_from_kubeconfig(
            &std::fs::read_to_string(server.kubeconfig()).unwrap(),
        )
        .await
        .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let api = Api::<ConfigMap>::namespaced(client.clone(), "default");
        let list = api
            .list_metadata(&ListParams::default().labels("tier=web"))
            .await
            .expect("a PartialObjectMetadataList");
        let names: Vec<_> = list
            .items
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        assert_eq!(names, ["meta-a"]);
        let one = api
            .get_metadata("meta-a")
            .await
            .expect("PartialObjectMetadata");
        assert_eq!(one.metadata.labels.unwrap()["tier"], "web");
        // A metadata watch: the initial object, as metadata.
        let metadata =
            Api::<kube::core::PartialObjectMeta<ConfigMap>>::namespaced(client, "default");
        let mut events = kube::runtime::watcher(metadata, Default::default()).boxed();
        let first = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("a watch event in time");
        assert!(first.is_some_and(|e| e.is_ok()));
    });

    // On the wire: the list in JSON, no data, kinds as upstream names them.
    let list = server
        .http(
            "GET",
            "/api/v1/namespaces/default/configmaps?labelSelector=tier%3Dweb",
        )
        .header("Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
        .send();
    assert_eq!(list.code, 200, "{}", list.body);
    let json = list.json();
    assert_eq!(json["kind"], "PartialObjectMetadataList");
    assert_eq!(json["apiVersion"], "meta.k8s.io/v1");
    assert_eq!(json["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(json["items"][0]["metadata"]["name"], "meta-a");
    assert!(json["items"][0].get("data").is_none(), "{json}");

    // The object in protobuf: the envelope names PartialObjectMetadata.
    let got = server
        .http("GET", "/api/v1/namespaces/default/configmaps/meta-a")
        .header("Accept: application/vnd.kubernetes.protobuf;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json")
        .send();
    assert_eq!(got.code, 200);
    let decoded = skiff_api::protobuf::decode_object(&got.bytes).expect("a protobuf body");
    assert_eq!(decoded["kind"], "PartialObjectMetadata");
    assert_eq!(decoded["metadata"]["labels"]["tier"], "web");
    assert!(decoded.get("data").is_none());

    // The list form on a single object is not acceptable, as upstream answers.
    let wrong = server
        .http("GET", "/api/v1/namespaces/default/configmaps/meta-a")
        .header("Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1")
        .send();
    assert_eq!(wrong.code, 406, "{}", wrong.body);
}

#[test]
fn client_side_apply_upgrades_to_server_side_without_a_conflict() {
    let server = TestServer::start_api_only();
    for minor in 31..=33 {
        let kubectl = server.kubectl(minor);
        let name = format!("upgrade-{minor}");
        let manifest = |value: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  key: {value}\n  kept: same\n"
            )
        };
        kubectl.ok_stdin(&["apply", "-f", "-"], &manifest("one"));
        // The documented migration: the same manifest, changed, applied server-side.
        kubectl.ok_stdin(&["apply", "--server-side", "-f", "-"], &manifest("two"));
        let cm = kubectl.json(&["get", "configmap", &name, "--show-managed-fields"]);
        assert_eq!(cm["data"]["key"], "two", "kubectl 1.{minor}");
        let owners: Vec<(String, String)> = cm["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["fieldsV1"]["f:data"].get("f:key").is_some())
            .map(|e| {
                let s = |k: &str| e[k].as_str().unwrap_or_default().to_string();
                (s("manager"), s("operation"))
            })
            .collect();
        assert_eq!(
            owners,
            [("kubectl".to_string(), "Apply".to_string())],
            "kubectl 1.{minor}: data.key moved to the server-side manager: {cm}"
        );
        // Another manager still conflicts, as it should.
        let err = kubectl.fails_stdin(
            &["apply", "--server-side", "--field-manager=other", "-f", "-"],
            &manifest("three"),
        );
        assert!(err.contains("conflict"), "kubectl 1.{minor}: {err}");
    }
}

//! Real kubectl binaries, 1.28 to 1.33, against a real server.

use serde_json::Value;
use skiff_e2e::{KUBECTL_MINORS, TestServer};

#[test]
fn every_kubectl_discovers_the_api_and_sees_the_built_in_objects() {
    let server = TestServer::start();
    for minor in KUBECTL_MINORS {
        let k = server.kubectl(minor);
        let version = k.json(&["version"]);
        assert_eq!(
            version["serverVersion"]["gitVersion"], "v1.33.0+skiff",
            "kubectl 1.{minor}"
        );

        let resources = k.ok(&["api-resources"]);
        for (name, short) in [
            ("deployments", "deploy"),
            ("pods", "po"),
            ("services", "svc"),
            ("nodes", "no"),
        ] {
            assert!(
                resources
                    .lines()
                    .any(|l| l.starts_with(name) && l.contains(short)),
                "kubectl 1.{minor} api-resources lacks {name}/{short}:\n{resources}"
            );
        }

        let namespaces = k.ok(&["get", "ns"]);
        for ns in skiff_apiserver::BUILT_IN_NAMESPACES {
            assert!(namespaces.contains(ns), "kubectl 1.{minor}: {namespaces}");
        }
        assert!(
            namespaces.starts_with("NAME"),
            "server-side table columns: {namespaces}"
        );
        assert!(namespaces.lines().next().unwrap().contains("STATUS"));

        let svc = k.ok(&["get", "svc", "kubernetes", "-o", "wide"]);
        assert!(
            svc.contains("10.43.0.1") && svc.contains("443/TCP"),
            "{svc}"
        );
        assert!(k.ok(&["cluster-info"]).contains("is running at"));
        // kubectl ≥ 1.32 sends this review as protobuf, which the server does not read yet.
        if minor <= 31 {
            assert_eq!(
                k.ok(&["auth", "can-i", "create", "deployments"]).trim(),
                "yes"
            );
        }
    }
}

/// The hello-node deployment steps with every kubectl (≥ 1.32 creates with protobuf bodies).
#[test]
fn hello_node_deployment_lifecycle() {
    let server = TestServer::start();
    for minor in KUBECTL_MINORS {
        let k = server.kubectl(minor);
        let name = format!("hello-node-{minor}");
        k.ok(&[
            "create",
            "deployment",
            &name,
            "--image=registry.local/hello-node:v1",
            "--port=8080",
        ]);

        let table = k.ok(&["get", "deployments", &name]);
        let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"],
            "kubectl 1.{minor}"
        );
        assert!(table.contains("0/1"), "{table}");
        let wide = k.ok(&["get", "deploy", &name, "-o", "wide"]);
        assert!(
            wide.contains("registry.local/hello-node:v1") && wide.contains(&format!("app={name}")),
            "{wide}"
        );

        let d = k.json(&["get", "deployment", &name]);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        assert_eq!(d["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );
        assert_eq!(d["metadata"]["generation"], 1);

        k.ok(&["scale", "deployment", &name, "--replicas=4"]);
        let d = k.json(&["get", "deployment", &name]);
        assert_eq!(d["spec"]["replicas"], 4);
        assert_eq!(d["metadata"]["generation"], 2);

        k.ok(&[
            "patch",
            "deployment",
            &name,
            "--type=merge",
            "-p",
            r#"{"metadata":{"labels":{"tier":"web"}}}"#,
        ]);
        k.ok(&[
            "patch",
            "deployment",
            &name,
            "--type=json",
            "-p",
            r#"[{"op":"replace","path":"/spec/replicas","value":2}]"#,
        ]);
        let d = k.json(&["get", "deployment", &name]);
        assert_eq!(d["metadata"]["labels"]["tier"], "web");
        assert_eq!(d["spec"]["replicas"], 2);
        assert_eq!(
            d["metadata"]["generation"], 3,
            "labels do not count as spec changes"
        );

        let yaml = k.ok(&["get", "deployment", &name, "-o", "yaml"]);
        assert!(
            yaml.contains("kind: Deployment") && yaml.contains("replicas: 2"),
            "{yaml}"
        );

        let described = k.ok(&["describe", "deployment", &name]);
        assert!(
            described.contains("RollingUpdateStrategy:  25% max unavailable, 25% max surge"),
            "{described}"
        );

        assert!(
            k.ok(&["get", "all"])
                .contains(&format!("deployment.apps/{name}"))
        );
        k.ok(&["delete", "deployment", &name]);
        let err = k.fails(&["get", "deployment", &name]);
        assert!(
            err.contains(&format!("deployments.apps \"{name}\" not found")),
            "{err}"
        );
    }
}

/// kubectl ≥ 1.32 sends protobuf for typed creates; manifests (`create -f`) go as JSON.
#[test]
fn manifests_create_with_every_kubectl() {
    let server = TestServer::start();
    for minor in KUBECTL_MINORS {
        let k = server.kubectl(minor);
        let manifest = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-{minor}\n  labels:\n    app: hello\ndata:\n  greeting: hi\n"
        );
        // kubectl 1.28 learns from OpenAPI v2 (protobuf) that the server validates fields;
        // later ones from OpenAPI v3. Its default (strict) needs no flag.
        let mut args = vec!["create", "-f", "-"];
        if minor > 28 {
            args.push("--validate=strict");
        }
        k.ok_stdin(&args, &manifest);
        let cm = k.json(&["get", "configmap", &format!("settings-{minor}")]);
        assert_eq!(cm["data"]["greeting"], "hi");
        assert!(
            cm["metadata"]["uid"]
                .as_str()
                .is_some_and(|u| u.len() == 36)
        );
        let listed = k.ok(&["get", "cm", "-l", "app=hello"]);
        assert!(listed.contains(&format!("settings-{minor}")), "{listed}");
    }
    let k = server.kubectl(33);
    let all = k.json(&["get", "cm", "-l", "app=hello"]);
    assert_eq!(
        all["items"].as_array().map(Vec::len),
        Some(KUBECTL_MINORS.count())
    );
}

#[test]
fn get_watch_sees_a_change() {
    use std::io::{BufRead, BufReader};
    let server = TestServer::start();
    // kubectl prints the header with the first row; give the initial list one.
    server.kubectl(31).ok(&["create", "configmap", "present"]);
    for minor in [28, 33] {
        let k = server.kubectl(minor);
        let mut child = k
            .command(&["get", "configmaps", "--watch", "--output-watch-events"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // A watch that never delivers must fail the test, not hang it.
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(60));
            kill_process(pid);
        });
        // The namespace's copy of the cluster CA (the controllers') comes and goes as it will.
        let mut lines = BufReader::new(child.stdout.take().unwrap())
            .lines()
            .filter(|l| !l.as_ref().is_ok_and(|l| l.contains("kube-root-ca.crt")));
        let header = lines.next().unwrap().unwrap();
        assert!(header.starts_with("EVENT"), "{header}");
        let first = lines.next().unwrap().unwrap();
        assert!(
            first.starts_with("ADDED") && first.contains("present"),
            "{first}"
        );
        let name = format!("watched-{minor}");
        server
            .kubectl(31)
            .ok(&["create", "configmap", &name, "--from-literal=a=1"]);
        let seen = lines
            .map_while(Result::ok)
            .find(|l| l.contains(&name))
            .expect("the watch printed the new configmap before the watchdog fired");
        assert!(seen.starts_with("ADDED"), "{seen}");
        let cells: Vec<&str> = seen.split_whitespace().collect();
        assert_eq!(cells[2], "1", "DATA column: {seen}");
        child.kill().ok();
        child.wait().ok();
        drop(watchdog);
    }
}

fn kill_process(pid: u32) {
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
}

#[test]
fn errors_reach_kubectl_as_upstream_prints_them() {
    let server = TestServer::start();
    let k = server.kubectl(31);
    k.ok(&["create", "configmap", "twice"]);
    let err = k.fails(&["create", "configmap", "twice"]);
    assert!(
        err.contains(r#"configmaps "twice" already exists"#),
        "{err}"
    );
    let err = k.fails(&["create", "configmap", "x", "-n", "nowhere"]);
    assert!(err.contains(r#"namespaces "nowhere" not found"#), "{err}");
    let err = k.fails(&["get", "widgets"]);
    assert!(
        err.contains(r#"the server doesn't have a resource type "widgets""#),
        "{err}"
    );
    // Upstream's kubectl skips objects it cannot get and says so.
    let err = k.fails(&["scale", "deployment", "missing", "--replicas=2"]);
    assert!(err.contains("no objects passed to scale"), "{err}");
    let out: Value = k.json(&["get", "ns", "default"]);
    assert_eq!(out["status"]["phase"], "Active");
    // A pod's spec is fixed but for a few fields: its image may change, its env may not.
    k.ok(&["run", "fixed", "--image=web:v1"]);
    k.ok(&["set", "image", "pod/fixed", "fixed=web:v2"]);
    let err = k.fails(&["set", "env", "pod/fixed", "COLOR=blue"]);
    assert!(
        err.contains(r#"Pod "fixed" is invalid: spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`"#),
        "{err}"
    );
}

/// Client-side apply (twice: the second is "unchanged"), `set image`, `rollout restart` and
/// `edit` all send strategic merge patches.
#[test]
fn apply_set_image_restart_and_edit_patch_strategically() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    std::fs::write(&editor, "#!/bin/sh\nsed -i 's/web:v2/web:v3/' \"$1\"\n").unwrap();
    std::fs::set_permissions(&editor, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    for minor in [29, 31, 33] {
        let k = server.kubectl(minor);
        let name = format!("applied-{minor}");
        let manifest = |replicas: u32| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}\nspec:\n  replicas: {replicas}\n  selector:\n    matchLabels: {{app: {name}}}\n  template:\n    metadata:\n      labels: {{app: {name}}}\n    spec:\n      containers:\n      - name: web\n        image: web:v1\n      - name: sidecar\n        image: side:v1\n"
            )
        };
        assert!(
            k.ok_stdin(&["apply", "-f", "-"], &manifest(2))
                .contains("created")
        );
        assert!(
            k.ok_stdin(&["apply", "-f", "-"], &manifest(2))
                .contains("unchanged")
        );
        k.ok(&["set", "image", &format!("deployment/{name}"), "web=web:v2"]);
        k.ok(&["rollout", "restart", &format!("deployment/{name}")]);
        let out = k
            .command(&["edit", &format!("deployment/{name}")])
            .env("EDITOR", &editor)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "edit: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let d = k.json(&["get", "deployment", &name]);
        let containers = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "web:v3", "kubectl 1.{minor}");
        assert_eq!(
            containers[1]["image"], "side:v1",
            "the other container is untouched"
        );
        assert!(
            d["spec"]["template"]["metadata"]["annotations"]["kubectl.kubernetes.io/restartedAt"]
                .is_string()
        );
        assert_eq!(
            d["metadata"]["generation"], 4,
            "three spec changes after the create"
        );

        // A changed manifest: apply's three-way merge sets replicas and the image it owns.
        assert!(
            k.ok_stdin(&["apply", "-f", "-"], &manifest(3))
                .contains("configured")
        );
        let d = k.json(&["get", "deployment", &name]);
        assert_eq!(d["spec"]["replicas"], 3);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "web:v1"
        );
    }
}

/// Unknown fields: refused under `--validate=strict`, warned about under `warn`, dropped
/// silently with `--validate=false`; never stored.
#[test]
fn field_validation_follows_the_directive() {
    let server = TestServer::start();
    for minor in [28, 29, 33] {
        let k = server.kubectl(minor);
        let manifest = |name: &str| {
            format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  colour: blue\ndata:\n  a: b\nextra: 1\n"
            )
        };
        let out = k.run_with_stdin(
            &["create", "-f", "-", "--validate=strict"],
            &manifest("strict"),
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(
                r#"strict decoding error: unknown field "extra", unknown field "metadata.colour""#
            ),
            "kubectl 1.{minor}: {err}"
        );
        let out = k.run_with_stdin(
            &["create", "-f", "-", "--validate=warn"],
            &manifest(&format!("warn-{minor}")),
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(r#"Warning: unknown field "extra""#),
            "kubectl 1.{minor}: {err}"
        );
        let out = k.run_with_stdin(
            &["create", "-f", "-", "--validate=false"],
            &manifest(&format!("ignore-{minor}")),
        );
        assert!(out.status.success());
        assert!(!String::from_utf8_lossy(&out.stderr).contains("unknown field"));
        let stored = k.json(&["get", "configmap", &format!("warn-{minor}")]);
        assert!(
            stored.get("extra").is_none() && stored["metadata"].get("colour").is_none(),
            "{stored}"
        );
        assert_eq!(stored["data"]["a"], "b");
    }
}

/// A pod using much of the spec survives create and read back unchanged (nothing dropped by
/// unknown-field pruning, inlined Go embeddings included), under strict validation.
#[test]
fn a_rich_pod_manifest_round_trips() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    let manifest = r#"
apiVersion: v1
kind: Pod
metadata:
  name: rich
  labels: {app: rich}
  annotations: {note: "kept"}
spec:
  restartPolicy: OnFailure
  nodeSelector: {disk: ssd}
  tolerations: [{key: k, operator: Exists, effect: NoSchedule}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a, b]}]}]
  securityContext: {runAsUser: 1000, fsGroup: 2000}
  volumes:
  - name: scratch
    emptyDir: {medium: Memory, sizeLimit: 64Mi}
  - name: config
    configMap: {name: settings, items: [{key: a, path: a.txt}], defaultMode: 420}
  - name: secret
    secret: {secretName: creds, optional: true}
  initContainers:
  - name: init
    image: busybox:1.36
    command: [sh, -c, "echo init"]
  containers:
  - name: app
    image: busybox:1.36
    args: [sleep, "3600"]
    workingDir: /work
    ports: [{name: http, containerPort: 8080, protocol: TCP}]
    env:
    - {name: PLAIN, value: "1"}
    - name: FROM_CM
      valueFrom: {configMapKeyRef: {name: settings, key: a}}
    - name: POD_IP
      valueFrom: {fieldRef: {fieldPath: status.podIP}}
    envFrom: [{secretRef: {name: creds}, prefix: S_}]
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: "1", memory: 128Mi}
    volumeMounts: [{name: scratch, mountPath: /scratch}, {name: config, mountPath: /etc/app, readOnly: true}]
    readinessProbe: {httpGet: {path: /healthz, port: http}, periodSeconds: 5}
    livenessProbe: {exec: {command: [true]}, initialDelaySeconds: 3}
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, readOnlyRootFilesystem: true}
"#;
    let out = k.run_with_stdin(&["create", "-f", "-", "--validate=strict"], manifest);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("unknown field"),
        "{stderr}"
    );
    let pod = k.json(&["get", "pod", "rich"]);
    let spec = &pod["spec"];
    assert_eq!(spec["volumes"][0]["emptyDir"]["sizeLimit"], "64Mi");
    assert_eq!(spec["volumes"][1]["configMap"]["items"][0]["path"], "a.txt");
    assert_eq!(spec["volumes"][2]["secret"]["optional"], true);
    let app = &spec["containers"][0];
    assert_eq!(
        app["env"][1]["valueFrom"]["configMapKeyRef"]["name"],
        "settings"
    );
    assert_eq!(
        app["env"][2]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(app["envFrom"][0]["secretRef"]["name"], "creds");
    assert_eq!(app["readinessProbe"]["httpGet"]["port"], "http");
    assert_eq!(app["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(app["resources"]["limits"]["memory"], "128Mi");
    assert_eq!(
        spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["values"][1],
        "b"
    );
    assert_eq!(spec["securityContext"]["runAsUser"], 1000);
    assert_eq!(spec["initContainers"][0]["command"][2], "echo init");
    assert_eq!(pod["status"]["phase"], "Pending");
    // kubectl run (a bare pod, JSON on every version) works too.
    k.ok(&["run", "bare", "--image=busybox:1.36", "--", "sleep", "60"]);
    assert_eq!(
        k.json(&["get", "pod", "bare"])["metadata"]["labels"]["run"],
        "bare"
    );
}

/// `kubectl explain` reads the OpenAPI v3 schemas: types, descriptions, nested fields.
/// (kubectl 1.28 explains from OpenAPI v2, which is not served.)
#[test]
fn explain_describes_fields_from_the_openapi_schemas() {
    let server = TestServer::start();
    for minor in 29..=33 {
        let k = server.kubectl(minor);
        let out = k.ok(&["explain", "deployment.spec.strategy"]);
        assert!(
            out.contains("<DeploymentStrategy>"),
            "kubectl 1.{minor}:\n{out}"
        );
        assert!(
            out.contains("The deployment strategy to use to replace existing pods with new ones."),
            "{out}"
        );
        assert!(
            out.contains("rollingUpdate") && out.contains("<RollingUpdateDeployment>"),
            "{out}"
        );
        let out = k.ok(&["explain", "pods.spec.containers.ports"]);
        assert!(
            out.contains("<[]ContainerPort>") && out.contains("containerPort"),
            "kubectl 1.{minor}:\n{out}"
        );
        let out = k.ok(&["explain", "svc.spec.selector"]);
        assert!(
            out.contains("<map[string]string>"),
            "kubectl 1.{minor}:\n{out}"
        );
    }
}

/// `apply --server-side`: create-or-update under field ownership, conflicts with another
/// manager's fields refused unless forced, and fields dropped from the configuration removed.
#[test]
fn server_side_apply_tracks_field_ownership() {
    let server = TestServer::start();
    for minor in KUBECTL_MINORS {
        let k = server.kubectl(minor);
        let validate = "--validate=strict";
        let name = format!("ssa-{minor}");
        let manifest = |replicas: u32, annotation: bool| {
            let annotations = if annotation {
                "\n  annotations: {team: a}"
            } else {
                ""
            };
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {name}{annotations}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers: [{{name: web, image: 'web:v1'}}]\n"
            )
        };
        let out = k.ok_stdin(
            &["apply", "--server-side", "-f", "-", validate],
            &manifest(2, true),
        );
        assert!(
            out.contains("serverside-applied"),
            "kubectl 1.{minor}: {out}"
        );
        let d = k.json(&["get", "deployment", &name, "--show-managed-fields"]);
        let entry = &d["metadata"]["managedFields"][0];
        assert_eq!(
            (entry["manager"].as_str(), entry["operation"].as_str()),
            (Some("kubectl"), Some("Apply"))
        );
        assert!(entry["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"web\"}"]["f:image"].is_object());

        // Another manager takes replicas; applying a different value conflicts.
        k.ok(&["scale", "deployment", &name, "--replicas=5"]);
        let out = k.run_with_stdin(
            &["apply", "--server-side", "-f", "-", validate],
            &manifest(2, true),
        );
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("Apply failed with 1 conflict: conflict with")
                && err.contains(".spec.replicas"),
            "{err}"
        );
        assert_eq!(k.json(&["get", "deployment", &name])["spec"]["replicas"], 5);

        // Forced, and without the annotation: replicas taken back, annotation removed.
        k.ok_stdin(
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "-f",
                "-",
                validate,
            ],
            &manifest(2, false),
        );
        let d = k.json(&["get", "deployment", &name]);
        assert_eq!(d["spec"]["replicas"], 2);
        assert!(
            d["metadata"]
                .get("annotations")
                .is_none_or(|a| a.get("team").is_none()),
            "{d}"
        );
    }
}

/// `kubectl expose`: services get a cluster IP from 10.43.0.0/16, and NodePort and
/// LoadBalancer services node ports from 30000–32767; LoadBalancers show `<pending>`.
#[test]
fn exposed_services_get_cluster_ips_and_node_ports() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    k.ok(&[
        "create",
        "deployment",
        "hello-node",
        "--image=hello:v1",
        "--port=8080",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "hello-node",
        "--type=LoadBalancer",
        "--port=8080",
    ]);
    k.ok(&[
        "expose",
        "deployment",
        "hello-node",
        "--name=hello-np",
        "--type=NodePort",
        "--port=80",
        "--target-port=8080",
    ]);
    k.ok(&["create", "service", "clusterip", "plain", "--tcp=80:8080"]);
    let mut ips = Vec::new();
    for name in ["hello-node", "hello-np", "plain"] {
        let svc = k.json(&["get", "service", name]);
        let ip = svc["spec"]["clusterIP"].as_str().unwrap().to_string();
        assert!(
            ip.starts_with("10.43.") && ip != "10.43.0.1",
            "{name}: {ip}"
        );
        assert_eq!(svc["spec"]["clusterIPs"][0], ip.as_str());
        ips.push(ip);
        let node_port = svc["spec"]["ports"][0]["nodePort"].as_u64();
        match name {
            "plain" => assert_eq!(node_port, None),
            _ => assert!(
                node_port.is_some_and(|p| (30000..=32767).contains(&p)),
                "{name}: {svc}"
            ),
        }
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "every service has its own address");
    let table = k.ok(&["get", "service", "hello-node"]);
    assert!(
        table.contains("LoadBalancer") && table.contains("<pending>") && table.contains("8080:3"),
        "{table}"
    );
    let headless = "apiVersion: v1\nkind: Service\nmetadata: {name: headless}\nspec:\n  clusterIP: None\n  selector: {app: x}\n  ports: [{port: 80}]\n";
    k.ok_stdin(&["create", "-f", "-"], headless);
    assert_eq!(
        k.json(&["get", "service", "headless"])["spec"]["clusterIP"],
        "None"
    );
}

/// An event recorded through events.k8s.io/v1 (as kube-rs' recorder does) shows up where
/// kubectl reads core/v1 events: `kubectl events` and the Events of `kubectl describe`.
#[test]
fn events_from_either_api_reach_describe_and_kubectl_events() {
    let server = TestServer::start();
    let k = server.kubectl(33);
    k.ok(&["run", "evented", "--image=busybox:1.36"]);
    let pod = k.json(&["get", "pod", "evented"]);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    let event = serde_json::json!({
        "apiVersion": "events.k8s.io/v1", "kind": "Event",
        "metadata": {"name": "evented.1", "namespace": "default"},
        "regarding": {"apiVersion": "v1", "kind": "Pod", "name": "evented", "namespace": "default", "uid": uid},
        "reason": "Scheduled", "note": "Successfully assigned default/evented to node-1",
        "type": "Normal", "action": "Binding", "eventTime": "2026-11-25T12:00:00.000000Z",
        "reportingController": "default-scheduler", "reportingInstance": "default-scheduler-skiff",
    });
    let reply = server
        .http("POST", "/apis/events.k8s.io/v1/namespaces/default/events")
        .json(&event)
        .send();
    assert_eq!(reply.code, 201, "{}", reply.body);

    let core = k.json(&["get", "events.v1.", "evented.1"]);
    assert_eq!(core["involvedObject"]["uid"], uid);
    assert_eq!(
        core["message"],
        "Successfully assigned default/evented to node-1"
    );
    let described = k.ok(&["describe", "pod", "evented"]);
    assert!(
        described.contains("Scheduled")
            && described.contains("Successfully assigned default/evented to node-1"),
        "{described}"
    );
    let events = k.ok(&["events"]);
    assert!(
        events.contains("Scheduled") && events.contains("Pod/evented"),
        "{events}"
    );
    // And back: the new API reads it in its own shape.
    let new = server
        .http(
            "GET",
            "/apis/events.k8s.io/v1/namespaces/default/events/evented.1",
        )
        .send()
        .json();
    assert_eq!(
        new["note"],
        "Successfully assigned default/evented to node-1"
    );
    assert_eq!(new["regarding"]["name"], "evented");
    assert!(new.get("involvedObject").is_none());
}

/// The rest of the acceptance list, with every kubectl: get of each kind plain and wide, a
/// strategic patch, config view, events.
#[test]
fn remaining_acceptance_commands() {
    let server = TestServer::start();
    for minor in KUBECTL_MINORS {
        let k = server.kubectl(minor);
        let name = format!("acc-{minor}");
        k.ok(&[
            "create",
            "deployment",
            &name,
            "--image=web:v1",
            "--port=8080",
        ]);
        k.ok(&["run", &name, "--image=web:v1", "--labels=app=acc"]);
        k.ok(&["expose", "pod", &name, "--port=80", "--target-port=8080"]);
        for kind in [
            "deployments",
            "pods",
            "services",
            "nodes",
            "replicasets",
            "endpoints",
            "namespaces",
            "configmaps",
        ] {
            for wide in [false, true] {
                let mut args = vec!["get", kind];
                if wide {
                    args.extend(["-o", "wide"]);
                }
                let out = k.run(&args);
                assert!(
                    out.status.success(),
                    "kubectl 1.{minor} {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let pods = k.ok(&["get", "pods", "-o", "wide"]);
        let header: Vec<&str> = pods.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(
            header,
            [
                "NAME",
                "READY",
                "STATUS",
                "RESTARTS",
                "AGE",
                "IP",
                "NODE",
                "NOMINATED",
                "NODE",
                "READINESS",
                "GATES"
            ],
            "kubectl 1.{minor}"
        );
        assert!(pods.contains(&name) && pods.contains("Pending"), "{pods}");
        let svc = k.ok(&["get", "svc", &name, "-o", "wide"]);
        assert!(
            svc.contains("ClusterIP") && svc.contains("80/TCP") && svc.contains("app=acc"),
            "{svc}"
        );

        k.ok(&[
            "patch",
            "deployment",
            &name,
            "--type=strategic",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"web:v2"}]}}}}"#,
        ]);
        let d = k.json(&["get", "deployment", &name]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "web:v2"
        );
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"],
            8080
        );

        let config = k.ok(&["config", "view"]);
        assert!(
            config.contains("current-context: skiff") && config.contains("REDACTED"),
            "{config}"
        );
        let out = k.run(&["events"]);
        assert!(
            out.status.success(),
            "kubectl 1.{minor} events: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

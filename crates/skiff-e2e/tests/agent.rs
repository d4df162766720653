//! The node agent for real, as root: a `skiff agent` process joins a test server as a node;
//! its pod bridge lives in a network namespace the test made (no uplink), so pods are
//! reached only from inside it. A busybox image built here is pushed to the cluster's
//! registry; real kubectl deploys an HTTP server from it, which answers on its pod IP;
//! crashes restart with back-off, a killed process restarts, an agent restart leaves
//! running containers alone, and deleting the pods leaves nothing behind.

use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;
use skiff_e2e::eventually;
use skiff_e2e::node::{
    NODE, Node, container_pid, events_of, http_get, pod_json, pods_of, restarted,
};

#[test]
fn pods_run_as_containers_restart_survive_an_agent_restart_and_leave_nothing_behind() {
    let mut node = Node::start();
    let data = node.data.clone();
    let node_ns = node.netns.clone();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    let node_object = kubectl.json(&["get", "node", NODE, "-o", "json"]);
    assert!(
        node_object["status"]["nodeInfo"]["containerRuntimeVersion"]
            .as_str()
            .unwrap()
            .starts_with("runc://")
    );
    assert_eq!(node_object["status"]["capacity"]["pods"], "110");

    // A deployment of an HTTP server: running, ready, answering on its pod IP.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
              "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 5, "containers": [{"name": "httpd", "image": "busybox:1.36",
                  "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"],
                  "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]}}}}"#,
    );
    kubectl.ok(&["rollout", "status", "deployment/web", "--timeout=60s"]);
    let pods = pods_of(server, "app=web");
    let mut uids: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["uid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(pods.len(), 2);
    for pod in &pods {
        let status = &pod["status"];
        assert_eq!(status["phase"], "Running");
        let ip = status["podIP"].as_str().unwrap();
        assert!(ip.starts_with("10.244.1."), "{ip}");
        assert_eq!(status["hostIP"], "127.0.0.1");
        let c = &status["containerStatuses"][0];
        assert_eq!(
            (c["ready"].as_bool(), c["restartCount"].as_i64()),
            (Some(true), Some(0))
        );
        assert!(c["containerID"].as_str().unwrap().starts_with("runc://"));
        assert!(
            c["imageID"]
                .as_str()
                .unwrap()
                .starts_with("docker.io/library/busybox@sha256:")
        );
        let name = pod["metadata"]["name"].as_str().unwrap();
        let hostname = http_get(&node_ns.net(), &format!("http://{ip}:8080/hostname"))
            .expect("the pod answers");
        assert_eq!(hostname.trim(), name);
        assert_eq!(
            http_get(&node_ns.net(), &format!("http://{ip}:8080/motd")).unwrap(),
            "hello from skiff\n"
        );
    }
    let events = events_of(&kubectl, pods[0]["metadata"]["name"].as_str().unwrap());
    for reason in ["Scheduled", "Pulled", "Created", "Started"] {
        assert!(events.contains(reason), "{reason} in {events}");
    }

    // kill -9 of a container's process: restarted, restartCount 1.
    let victim = &pods[0];
    let victim_name = victim["metadata"]["name"].as_str().unwrap().to_string();
    node.kill_and_await_restart(victim, "httpd");
    let p = pod_json(server, &victim_name).unwrap();
    assert_eq!(
        p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"],
        137
    );

    // A crashing container: CrashLoopBackOff with its exit code and output kept (and its
    // environment from a ConfigMap).
    kubectl.ok(&[
        "create",
        "configmap",
        "greetings",
        "--from-literal=hello=world",
    ]);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash", "labels": {"app": "crash"}},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sh", "-c", "echo boom $GREETING; echo -n exited on purpose > /dev/termination-log; exit 3"],
              "env": [{"name": "GREETING", "valueFrom": {"configMapKeyRef": {"name": "greetings", "key": "hello"}}}]}]}}"#,
    );
    eventually(
        "the crashing pod backs off",
        Duration::from_secs(40),
        || {
            pod_json(server, "crash").is_some_and(|p| {
                let c = &p["status"]["containerStatuses"][0];
                c["state"]["waiting"]["reason"] == "CrashLoopBackOff"
                    && c["lastState"]["terminated"]["exitCode"] == 3
                    && c["lastState"]["terminated"]["message"] == "exited on purpose"
                    && c["restartCount"].as_i64() >= Some(1)
            })
        },
    );
    // The delay grows: 10 s after the first crash, 20 s after the second.
    let waiting_message = || {
        pod_json(server, "crash").map_or(String::new(), |p| {
            p["status"]["containerStatuses"][0]["state"]["waiting"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
    };
    eventually("a 20 s back-off", Duration::from_secs(40), || {
        waiting_message()
            .starts_with("back-off 20s restarting failed container=c pod=crash_default(")
    });
    let crash = pod_json(server, "crash").unwrap();
    assert!(crash["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(2));
    let uid = crash["metadata"]["uid"].as_str().unwrap();
    uids.push(uid.to_string());
    let log = std::fs::read_to_string(
        data.join("logs")
            .join(format!("default_crash_{uid}/c/0.log")),
    )
    .unwrap();
    assert!(log.contains(" stdout F boom world"), "{log}");
    let events = events_of(&kubectl, "crash");
    assert!(events.contains("BackOff"), "{events}");

    // An agent restart adopts what runs: same processes, same restart counts.
    let before = pod_json(server, &victim_name).unwrap();
    let pid_before = container_pid(&data, &before, "httpd", 1);
    node.restart_agent();
    let server = &node.server;
    std::thread::sleep(Duration::from_secs(3));
    let after = pod_json(server, &victim_name).unwrap();
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 1);
    assert!(after["status"]["containerStatuses"][0]["state"]["running"].is_object());
    assert_eq!(container_pid(&data, &after, "httpd", 1), pid_before);
    assert!(
        !data
            .join("pods")
            .join(before["metadata"]["uid"].as_str().unwrap())
            .join("containers/httpd/2")
            .exists()
    );

    // Deleting: SIGTERM, then the pods go, and nothing is left on the node.
    kubectl.ok(&["delete", "deployment", "web"]);
    kubectl.ok(&["delete", "pod", "crash", "--wait=false"]);
    node.await_no_pods();
    node.assert_left_clean(&uids);
}

fn condition(pod: &Value, type_: &str) -> String {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == type_)
        .map(|c| c["status"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn probes_gate_readiness_restart_unhealthy_containers_and_limits_oom_kill() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ready"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "web", "image": "busybox:1.36",
             "command": ["httpd", "-f", "-p", "8080", "-h", "/etc"], "ports": [{"name": "http", "containerPort": 8080}],
             "readinessProbe": {"httpGet": {"path": "/hostname", "port": "http"}, "periodSeconds": 1}}]}}
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "never-ready"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:1.36",
             "command": ["sleep", "1000"],
             "readinessProbe": {"tcpSocket": {"port": 9999}, "periodSeconds": 1}}]}}
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unhealthy"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:1.36",
             "command": ["sh", "-c", "touch /tmp/alive; sleep 2; rm /tmp/alive; sleep 1000"],
             "livenessProbe": {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 1}}]}}
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "slow-start"},
           "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "c", "image": "busybox:1.36",
             "command": ["sh", "-c", "sleep 2; touch /tmp/started; sleep 1000"],
             "startupProbe": {"exec": {"command": ["cat", "/tmp/started"]}, "periodSeconds": 1, "failureThreshold": 30}}]}}
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oom"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36",
             "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
             "resources": {"limits": {"memory": "16Mi"}}}]}}"#,
    );
    eventually(
        "a memory limit yields OOMKilled",
        Duration::from_secs(30),
        || {
            pod_json(server, "oom").is_some_and(|p| {
                let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
                p["status"]["phase"] == "Failed"
                    && t["reason"] == "OOMKilled"
                    && t["exitCode"] == 137
            })
        },
    );
    eventually(
        "readiness follows the HTTP probe",
        Duration::from_secs(30),
        || pod_json(server, "ready").is_some_and(|p| condition(&p, "Ready") == "True"),
    );
    eventually(
        "the pod without a listener runs, not ready",
        Duration::from_secs(30),
        || {
            pod_json(server, "never-ready").is_some_and(|p| {
                p["status"]["phase"] == "Running"
                    && condition(&p, "Ready") == "False"
                    && p["status"]["containerStatuses"][0]["ready"] == false
            })
        },
    );
    let events = events_of(&kubectl, "never-ready");
    assert!(
        events.contains("Readiness probe failed: dial tcp"),
        "{events}"
    );
    eventually(
        "the failing liveness probe restarts the container",
        Duration::from_secs(30),
        || restarted(server, "unhealthy"),
    );
    let events = events_of(&kubectl, "unhealthy");
    assert!(events.contains("Liveness probe failed"), "{events}");
    assert!(
        events.contains("Container c failed liveness probe, will be restarted"),
        "{events}"
    );
    eventually(
        "the startup probe lets the container count as started",
        Duration::from_secs(30),
        || {
            pod_json(server, "slow-start").is_some_and(|p| {
                p["status"]["containerStatuses"][0]["started"] == true
                    && condition(&p, "Ready") == "True"
            })
        },
    );
    // A readiness gate holds Ready back until its condition (someone else's) is True; the
    // node keeps that condition when it writes the status.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gated"},
           "spec": {"terminationGracePeriodSeconds": 1, "readinessGates": [{"conditionType": "example.com/feature"}],
             "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "1000"]}]}}"#,
    );
    eventually("the gate holds Ready back", Duration::from_secs(30), || {
        pod_json(server, "gated").is_some_and(|p| {
            condition(&p, "ContainersReady") == "True"
                && condition(&p, "Ready") == "False"
                && p["status"]["conditions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|c| c["reason"] == "ReadinessGatesNotReady")
        })
    });
    kubectl.ok(&[
        "patch",
        "pod",
        "gated",
        "--subresource=status",
        "--type=json",
        "-p",
        r#"[{"op": "add", "path": "/status/conditions/-", "value": {"type": "example.com/feature", "status": "True"}}]"#,
    ]);
    kubectl.ok(&[
        "wait",
        "pod/gated",
        "--for=condition=Ready",
        "--timeout=30s",
    ]);
    assert_eq!(
        condition(&pod_json(server, "gated").unwrap(), "example.com/feature"),
        "True"
    );
    // With FallbackToLogsOnError a failed run without a message file gets its log's end.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "last-words"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36",
             "terminationMessagePolicy": "FallbackToLogsOnError",
             "command": ["sh", "-c", "echo first; echo last words; exit 1"]}]}}"#,
    );
    eventually("the log as the message", Duration::from_secs(30), || {
        pod_json(server, "last-words").is_some_and(|p| {
            p["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
                == "first\nlast words\n"
        })
    });
    // A pod past its active deadline is ended by the node: Failed, DeadlineExceeded.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "deadline"},
           "spec": {"terminationGracePeriodSeconds": 1, "activeDeadlineSeconds": 3,
             "containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "1000"]}]}}"#,
    );
    eventually("the deadline ends the pod", Duration::from_secs(30), || {
        pod_json(server, "deadline").is_some_and(|p| {
            p["status"]["phase"] == "Failed"
                && p["status"]["reason"] == "DeadlineExceeded"
                && p["status"]["containerStatuses"][0]["state"]["terminated"].is_object()
        })
    });
    let events = events_of(&kubectl, "deadline");
    assert!(
        events.contains("Pod was active on the node longer than the specified deadline"),
        "{events}"
    );
    kubectl.ok(&["delete", "pods", "--all", "--wait=false"]);
    node.await_no_pods();
}

/// Reads lines from a child's stdout until `count` arrived or `within` passed; the rest of
/// its output is read and dropped.
fn read_lines(child: &mut Child, count: usize, within: Duration) -> Vec<String> {
    read_lines_until(child, within, |lines| lines.len() >= count)
}

/// Reads lines from a child's stdout until `done` says so or `within` passed; the rest of
/// its output is read and dropped.
fn read_lines_until(
    child: &mut Child,
    within: Duration,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    use std::io::BufRead;
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Drains to the end even when nobody listens any more: a closed pipe would kill
        // the child at its next write.
        for line in std::io::BufReader::new(stdout).lines() {
            let _ = tx.send(line.unwrap_or_default());
        }
    });
    let deadline = std::time::Instant::now() + within;
    let mut lines = Vec::new();
    while !done(&lines) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    lines
}

#[test]
fn kubectl_logs_stream_from_the_node_with_upstreams_options_and_errors() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "talk"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
              {"name": "counter", "image": "busybox:1.36",
               "command": ["sh", "-c", "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.2; done"]},
              {"name": "once", "image": "busybox:1.36",
               "command": ["sh", "-c", "echo first run; sleep 0.2; echo to stderr >&2; exec sleep 3600"]}]}}"#,
    );
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "crash"},
            "spec": {"terminationGracePeriodSeconds": 1,
              "volumes": [{"name": "state", "emptyDir": {}}],
              "containers": [{"name": "c", "image": "busybox:1.36",
                "volumeMounts": [{"name": "state", "mountPath": "/state"}],
                "command": ["sh", "-c", "n=$(cat /state/n 2>/dev/null || echo 0); echo run $n; echo $((n+1)) > /state/n; exit 1"]}]}}"#,
    );
    kubectl.ok(&["wait", "pod/talk", "--for=condition=Ready", "--timeout=60s"]);

    let once = "first run\nto stderr\n";
    eventually(
        "both streams are in the log",
        Duration::from_secs(10),
        || kubectl.ok(&["logs", "talk", "-c", "once"]) == once,
    );
    // Every kubectl on the machine takes the same path (1.28 is the oldest).
    assert_eq!(server.kubectl(28).ok(&["logs", "talk", "-c", "once"]), once);
    let stamped = kubectl.ok(&["logs", "talk", "-c", "once", "--timestamps"]);
    for line in stamped.lines() {
        let (time, _) = line.split_once(' ').unwrap();
        assert!(
            time.ends_with('Z') && time.contains('T'),
            "RFC 3339 first: {line}"
        );
    }
    assert_eq!(
        kubectl.ok(&["logs", "talk", "-c", "once", "--limit-bytes=5"]),
        "first"
    );
    assert_eq!(
        kubectl.ok(&["logs", "talk", "-c", "once", "--since=1h"]),
        once
    );

    eventually("the counter has written", Duration::from_secs(10), || {
        kubectl
            .ok(&["logs", "talk", "-c", "counter"])
            .lines()
            .count()
            >= 5
    });
    let tail = kubectl.ok(&["logs", "talk", "-c", "counter", "--tail=2"]);
    assert_eq!(tail.lines().count(), 2, "{tail}");
    assert!(tail.lines().all(|l| l.starts_with("line ")), "{tail}");

    // -f streams as the container writes: consecutive lines, arriving while it runs.
    let mut follow = kubectl
        .command(&["logs", "-f", "talk", "-c", "counter", "--tail=1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = read_lines(&mut follow, 6, Duration::from_secs(15));
    let _ = follow.kill();
    let _ = follow.wait();
    assert_eq!(lines.len(), 6, "followed lines: {lines:?}");
    let numbers: Vec<u64> = lines
        .iter()
        .map(|l| l.strip_prefix("line ").unwrap().parse().unwrap())
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");

    // --previous: the run before the current one.
    eventually(
        "the crashing container has run twice",
        Duration::from_secs(40),
        || kubectl.run(&["logs", "crash"]).stdout == b"run 1\n",
    );
    assert_eq!(kubectl.ok(&["logs", "crash", "--previous"]), "run 0\n");
    // A followed log of a run that ended ends with it.
    assert_eq!(kubectl.ok(&["logs", "-f", "crash"]), "run 1\n");

    // Errors are upstream's.
    let err = kubectl.fails(&["logs", "talk", "-c", "nope"]);
    assert!(
        err.contains("container nope is not valid for pod talk"),
        "{err}"
    );
    let err = kubectl.fails(&["logs", "nosuch"]);
    assert!(err.contains("pods \"nosuch\" not found"), "{err}");
    let err = kubectl.fails(&["logs", "talk", "-c", "once", "--previous"]);
    assert!(
        err.contains("previous terminated container \"once\" in pod \"talk\" not found"),
        "{err}"
    );
    let reply = server
        .http("GET", "/api/v1/namespaces/default/pods/talk/log")
        .send();
    assert_eq!(reply.code, 400);
    assert_eq!(
        reply.json()["message"],
        "a container name must be specified for pod talk, choose one of: [counter once]"
    );
    let reply = server
        .http(
            "GET",
            "/api/v1/namespaces/default/pods/talk/log?container=once&tailLines=-1",
        )
        .send();
    assert_eq!(reply.code, 422, "{}", reply.body);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "nowhere"},
            "spec": {"containers": [{"name": "c", "image": "busybox:no-such-tag"}]}}"#,
    );
    eventually("the pod is on the node", Duration::from_secs(20), || {
        pod_json(server, "nowhere").is_some_and(|p| p["spec"]["nodeName"] == NODE)
    });
    let err = kubectl.fails(&["logs", "nowhere"]);
    assert!(
        err.contains("container \"c\" in pod \"nowhere\" is waiting to start"),
        "{err}"
    );
    // A finished pod: the node frees what it ran on, and its logs stay readable.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "done"},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36",
              "command": ["sh", "-c", "echo all done"]}]}}"#,
    );
    eventually("the pod succeeds", Duration::from_secs(30), || {
        pod_json(server, "done").is_some_and(|p| p["status"]["phase"] == "Succeeded")
    });
    let uid = pod_json(server, "done").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    eventually(
        "the node tore the finished pod down",
        Duration::from_secs(20),
        || !node.data.join("pods").join(&uid).exists(),
    );
    assert_eq!(kubectl.ok(&["logs", "done"]), "all done\n");
    assert_eq!(kubectl.ok(&["logs", "done", "-f"]), "all done\n");
    kubectl.ok(&[
        "delete",
        "pod",
        "talk",
        "crash",
        "nowhere",
        "done",
        "--wait=true",
    ]);
}

/// `kubectl args` run in a terminal of its own: under `script`, which gives it a
/// pseudo-terminal and passes its own stdin and stdout through.
fn in_script(kubectl: &skiff_e2e::Kubectl, args: &[&str]) -> Command {
    let cmd = kubectl.command(args);
    let line: Vec<String> = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect();
    let mut script = Command::new("script");
    script.args(["-qec", &line.join(" "), "/dev/null"]);
    script
}

/// kubectl run in a terminal with no input; its output and exit status.
fn in_terminal(kubectl: &skiff_e2e::Kubectl, args: &[&str]) -> Output {
    in_script(kubectl, args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn kubectl_exec_runs_commands_with_their_exit_codes_stdin_and_a_terminal() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
              {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
               "env": [{"name": "GREETING", "value": "hello from the pod"}]}]}}"#,
    );
    kubectl.ok(&[
        "wait",
        "pod/shell",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);

    // kubectl 1.33 speaks WebSocket; 1.28 and 1.29 speak SPDY only: the same over both.
    let big = "x".repeat(300_000);
    for minor in [33, 28, 29] {
        let k = server.kubectl(minor);
        // The container's environment, as its main process has it; stdout and stderr
        // apart; the exit code.
        let out = k.run(&[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo $GREETING; echo err >&2; exit 3",
        ]);
        assert_eq!(out.status.code(), Some(3), "1.{minor}: {out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "hello from the pod\n");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("err\n"),
            "1.{minor}: {out:?}"
        );
        assert_eq!(
            k.ok_stdin(&["exec", "-i", "shell", "--", "cat"], "fed through stdin\n"),
            "fed through stdin\n"
        );
        assert_eq!(
            k.ok_stdin(
                &["exec", "-i", "shell", "--", "sh", "-c", "cat | wc -c"],
                &big
            )
            .trim(),
            "300000",
            "1.{minor}"
        );
        // -it: the command has a terminal.
        let out = in_terminal(
            &k,
            &["exec", "-it", "shell", "--", "sh", "-c", "tty; exit 5"],
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("/dev/pts/"), "1.{minor}: {text}");
        assert_eq!(out.status.code(), Some(5), "1.{minor}: {text}");
    }

    // A client that goes away takes its command with it.
    let mut left = kubectl
        .command(&[
            "exec",
            "shell",
            "--",
            "sh",
            "-c",
            "echo $$ > /tmp/left.pid; exec sleep 1000",
        ])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    eventually("the command runs", Duration::from_secs(10), || {
        kubectl
            .run(&["exec", "shell", "--", "cat", "/tmp/left.pid"])
            .status
            .success()
    });
    let _ = left.kill();
    let _ = left.wait();
    eventually(
        "the command is gone with its client",
        Duration::from_secs(10),
        || {
            kubectl.ok(&[
                "exec",
                "shell",
                "--",
                "sh",
                "-c",
                "kill -0 $(cat /tmp/left.pid) 2>/dev/null && echo alive || echo gone",
            ]) == "gone\n"
        },
    );

    // kubectl cp is tar over exec, both ways.
    let local = tempfile::tempdir().unwrap();
    let file = local.path().join("notes.txt");
    std::fs::write(&file, "copied in\n").unwrap();
    kubectl.ok(&["cp", file.to_str().unwrap(), "shell:/tmp/notes.txt"]);
    assert_eq!(
        kubectl.ok(&["exec", "shell", "--", "cat", "/tmp/notes.txt"]),
        "copied in\n"
    );
    let back = local.path().join("back.txt");
    kubectl.ok(&["cp", "shell:/tmp/notes.txt", back.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(&back).unwrap(), "copied in\n");

    let err = kubectl.fails(&["exec", "shell", "-c", "nope", "--", "true"]);
    assert!(
        err.contains("container nope is not valid for pod shell"),
        "{err}"
    );
    let err = kubectl.fails(&["exec", "nosuch", "--", "true"]);
    assert!(err.contains("pods \"nosuch\" not found"), "{err}");
    kubectl.ok(&["delete", "pod", "shell", "--wait=true"]);
}

/// `GET path` over HTTP/1.0 to 127.0.0.1:`port` (a kubectl port-forward); the whole reply.
fn local_http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    tcp.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())?;
    let mut reply = String::new();
    tcp.read_to_string(&mut reply)?;
    Ok(reply)
}

/// `kubectl port-forward pod/web :<pod_port>`, and the local port it picked.
fn port_forward(kubectl: &skiff_e2e::Kubectl, pod_port: u16) -> (Child, u16) {
    let mut child = kubectl
        .command(&["port-forward", "pod/web", &format!(":{pod_port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = read_lines(&mut child, 1, Duration::from_secs(20));
    // "Forwarding from 127.0.0.1:41234 -> 8080"
    let port = line
        .first()
        .and_then(|l| l.strip_prefix("Forwarding from 127.0.0.1:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("port-forward said {line:?}"));
    (child, port)
}

#[test]
fn kubectl_port_forward_reaches_the_pod_over_websocket_and_spdy() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
              {"name": "httpd", "image": "busybox:1.36",
               "command": ["httpd", "-f", "-p", "127.0.0.1:8080", "-h", "/etc"]}]}}"#,
    );
    kubectl.ok(&["wait", "pod/web", "--for=condition=Ready", "--timeout=60s"]);
    // 1.33 tunnels SPDY through WebSocket; 1.30 and 1.28 speak SPDY after an upgrade.
    for minor in [33, 30, 28] {
        let (mut forward, port) = port_forward(&server.kubectl(minor), 8080);
        // Several connections, one after another and at once, over the one session.
        for _ in 0..3 {
            let reply = local_http_get(port, "/motd").unwrap();
            assert!(reply.starts_with("HTTP/1.1 200 OK"), "1.{minor}: {reply}");
            assert!(reply.ends_with("hello from skiff\n"), "1.{minor}: {reply}");
        }
        let together: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(move || local_http_get(port, "/motd")))
            .collect();
        for t in together {
            assert!(t.join().unwrap().unwrap().ends_with("hello from skiff\n"));
        }
        let _ = forward.kill();
        let _ = forward.wait();
    }
    // A port nothing listens on: the connection closes and kubectl says why.
    let (mut forward, port) = port_forward(&kubectl, 9999);
    let reply = local_http_get(port, "/").unwrap_or_default();
    assert_eq!(reply, "", "nothing comes back from a closed port");
    std::thread::sleep(Duration::from_millis(500));
    let _ = forward.kill();
    let out = forward.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("error forwarding port 9999")
            && err.to_lowercase().contains("connection refused"),
        "{err}"
    );
    kubectl.ok(&["delete", "pod", "web", "--wait=true"]);
}

#[test]
fn configmap_secret_downward_and_projected_volumes_and_memory_emptydirs() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok(&[
        "create",
        "configmap",
        "settings",
        "--from-literal=color=blue",
        "--from-literal=size=L",
    ]);
    kubectl.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=s3cret",
    ]);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "vols", "labels": {"app": "vols", "tier": "test"}},
            "spec": {"terminationGracePeriodSeconds": 1,
              "volumes": [
                {"name": "settings", "configMap": {"name": "settings"}},
                {"name": "picked", "configMap": {"name": "settings", "items": [{"key": "color", "path": "deep/colour"}]}},
                {"name": "creds", "secret": {"secretName": "creds", "defaultMode": 256}},
                {"name": "info", "downwardAPI": {"items": [
                  {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                  {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
                  {"path": "mem", "resourceFieldRef": {"containerName": "main", "resource": "limits.memory", "divisor": "1Mi"}}]}},
                {"name": "all", "projected": {"sources": [
                  {"configMap": {"name": "settings", "items": [{"key": "size", "path": "size"}]}},
                  {"secret": {"name": "creds"}},
                  {"downwardAPI": {"items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]}}]}},
                {"name": "cache", "emptyDir": {"medium": "Memory", "sizeLimit": "8Mi"}},
                {"name": "later", "configMap": {"name": "arrives-later", "optional": true}}],
              "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
                "env": [{"name": "CPU_MILLIS", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu", "divisor": "1m"}}}],
                "volumeMounts": [
                  {"name": "settings", "mountPath": "/etc/settings"},
                  {"name": "picked", "mountPath": "/etc/picked"},
                  {"name": "creds", "mountPath": "/etc/creds"},
                  {"name": "info", "mountPath": "/etc/info"},
                  {"name": "all", "mountPath": "/etc/all"},
                  {"name": "cache", "mountPath": "/cache"},
                  {"name": "later", "mountPath": "/etc/later"}]}]}}"#,
    );
    kubectl.ok(&["wait", "pod/vols", "--for=condition=Ready", "--timeout=60s"]);
    let sh = |script: &str| kubectl.ok(&["exec", "vols", "--", "sh", "-c", script]);
    assert_eq!(sh("cat /etc/settings/color /etc/settings/size"), "blueL");
    assert_eq!(
        sh("cat /etc/picked/deep/colour; ls /etc/picked"),
        "bluedeep\n"
    );
    assert_eq!(sh("cat /etc/creds/password"), "s3cret");
    assert_eq!(sh("stat -L -c %a /etc/creds/password"), "400\n");
    assert_eq!(sh("cat /etc/info/labels"), "app=\"vols\"\ntier=\"test\"");
    assert_eq!(sh("cat /etc/info/name /etc/info/mem"), "vols64");
    assert_eq!(
        sh("cat /etc/all/size /etc/all/password /etc/all/ns"),
        "Ls3cretdefault"
    );
    assert_eq!(sh("echo $CPU_MILLIS"), "500\n");
    // Read-only where the node writes; a tmpfs for the memory emptyDir.
    assert!(
        kubectl
            .run(&[
                "exec",
                "vols",
                "--",
                "sh",
                "-c",
                "echo x > /etc/settings/new"
            ])
            .status
            .code()
            != Some(0)
    );
    assert!(
        sh("grep ' /cache ' /proc/mounts").starts_with("tmpfs /cache tmpfs"),
        "{}",
        sh("cat /proc/mounts")
    );
    assert_eq!(sh("ls /etc/later | wc -l").trim(), "0");

    // ServiceAccount admission mounted the default account's API credentials: a token the
    // API takes, the cluster CA (from the namespace's kube-root-ca.crt) and the namespace.
    let pod = pod_json(server, "vols").unwrap();
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let sa = "/var/run/secrets/kubernetes.io/serviceaccount";
    assert_eq!(sh(&format!("cat {sa}/namespace")), "default");
    let ca = std::fs::read_to_string(server.ca_file()).unwrap();
    assert_eq!(sh(&format!("cat {sa}/ca.crt")), ca);
    // And where the API is, as in-cluster clients look for it.
    assert_eq!(
        sh("echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $KUBERNETES_PORT"),
        "10.43.0.1:443 tcp://10.43.0.1:443\n"
    );
    let token = sh(&format!("cat {sa}/token"));
    let as_pod = kubectl.ok(&["get", "pod", "vols", "-o", "name", "--token", &token]);
    assert_eq!(as_pod.trim(), "pod/vols");
    assert!(
        kubectl
            .run(&["get", "pods", "--token", "not-a-token"])
            .status
            .code()
            != Some(0)
    );
    // Files follow their sources while the pod runs.
    kubectl.ok(&[
        "patch",
        "configmap",
        "settings",
        "-p",
        r#"{"data": {"color": "green"}}"#,
    ]);
    eventually(
        "the changed key in the volume",
        Duration::from_secs(30),
        || sh("cat /etc/settings/color") == "green",
    );
    // A new image (the one field of a pod's spec that may change) replaces the container
    // at once, as the kubelet does when a container's definition changes.
    kubectl.ok(&[
        "set",
        "image",
        "pod/vols",
        "main=docker.io/library/busybox:1.36",
    ]);
    eventually("the container replaced", Duration::from_secs(30), || {
        pod_json(server, "vols").is_some_and(|p| {
            let c = &p["status"]["containerStatuses"][0];
            c["restartCount"] == 1 && c["ready"] == true
        })
    });
    assert!(
        events_of(&kubectl, "vols")
            .contains("Container main definition changed, will be restarted")
    );
    assert_eq!(sh("cat /etc/settings/color"), "green");
    // kubectl debug: an ephemeral container added through its subresource, sharing the
    // target container's processes (its PID 1 is the target's `sleep 3600`).
    kubectl.ok(&[
        "debug",
        "vols",
        "--image=busybox:1.36",
        "--target=main",
        "--container=debugger",
        "--",
        "sh",
        "-c",
        "cat /proc/1/cmdline; echo; sleep 30",
    ]);
    eventually("the debugger's output", Duration::from_secs(30), || {
        kubectl
            .run(&["logs", "vols", "-c", "debugger"])
            .stdout
            .windows(10)
            .any(|w| w == b"sleep\x003600")
    });
    let pod = pod_json(server, "vols").unwrap();
    let debugger = &pod["status"]["ephemeralContainerStatuses"][0];
    assert_eq!(debugger["name"], "debugger");
    assert!(debugger["state"]["running"].is_object(), "{debugger}");
    // Interactive: kubectl debug -i attaches to the new container's stdin and output
    // (without stdinOnce, as kubectl makes it: the command ends the session).
    let out = kubectl.run_with_stdin(
        &[
            "debug",
            "vols",
            "-i",
            "--image=busybox:1.36",
            "--container=reader",
            "--",
            "sh",
            "-c",
            "read line; echo got $line",
        ],
        "typed\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("got typed"),
        "{out:?}"
    );
    let refused = kubectl.fails(&["debug", "vols", "--image=busybox:1.36", "--container=main"]);
    assert!(refused.contains("Duplicate value: \"main\""), "{refused}");
    // An account that does not exist refuses the pod.
    let refused = kubectl.fails_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "robot"},
            "spec": {"serviceAccountName": "robot",
              "containers": [{"name": "main", "image": "busybox:1.36"}]}}"#,
    );
    assert!(
        refused.contains(
            r#"pods "robot" is forbidden: error looking up service account default/robot: serviceaccount "robot" not found"#
        ),
        "{refused}"
    );

    // A missing ConfigMap holds the pod back with FailedMount until it exists.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "waits"},
            "spec": {"terminationGracePeriodSeconds": 1,
              "volumes": [{"name": "c", "configMap": {"name": "not-yet"}}],
              "containers": [{"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "c", "mountPath": "/etc/c"}]}]}}"#,
    );
    eventually("a FailedMount event", Duration::from_secs(20), || {
        events_of(&kubectl, "waits").contains("configmap \"not-yet\" not found")
    });
    assert_eq!(
        pod_json(server, "waits").unwrap()["status"]["phase"],
        "Pending"
    );
    kubectl.ok(&["create", "configmap", "not-yet", "--from-literal=k=v"]);
    kubectl.ok(&[
        "wait",
        "pod/waits",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    assert_eq!(kubectl.ok(&["exec", "waits", "--", "cat", "/etc/c/k"]), "v");

    let uid = pod_json(server, "vols").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    kubectl.ok(&["delete", "pod", "vols", "waits", "--wait=true"]);
    let leftover = skiff_e2e::mounts_under(&node.data);
    assert!(leftover.is_empty(), "mounts left behind: {leftover:?}");
    assert!(!node.data.join("pods").join(uid).exists());
}

#[test]
fn post_start_and_pre_stop_hooks_run_around_the_container() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    let shared = node.data.parent().unwrap().join("shared");
    std::fs::create_dir_all(&shared).unwrap();
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hooked"},
        "spec": {"terminationGracePeriodSeconds": 10,
          "volumes": [{"name": "shared", "hostPath": {"path": "SHARED"}}],
          "containers": [{"name": "main", "image": "busybox:1.36",
            "command": ["sh", "-c", "trap 'cat /shared/prestop >> /shared/order; echo term >> /shared/order; exit 0' TERM; while true; do sleep 0.1; done"],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            "lifecycle": {
              "postStart": {"exec": {"command": ["sh", "-c", "echo started > /shared/poststart"]}},
              "preStop": {"exec": {"command": ["sh", "-c", "echo prestop > /shared/prestop"]}}}}]}}"#
        .replace("SHARED", shared.to_str().unwrap());
    kubectl.ok_stdin(&["apply", "-f", "-"], &manifest);
    kubectl.ok(&[
        "wait",
        "pod/hooked",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    assert_eq!(
        std::fs::read_to_string(shared.join("poststart")).unwrap(),
        "started\n",
        "postStart ran before the pod was Ready"
    );
    kubectl.ok(&["delete", "pod", "hooked", "--wait=true", "--timeout=30s"]);
    assert_eq!(
        std::fs::read_to_string(shared.join("order")).unwrap(),
        "prestop\nterm\n",
        "preStop ran, then SIGTERM"
    );

    // A failed liveness probe stops the run as a deletion does: preStop, then SIGTERM.
    let manifest = r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "unhealthy"},
        "spec": {"terminationGracePeriodSeconds": 5,
          "volumes": [{"name": "shared", "hostPath": {"path": "SHARED"}}],
          "containers": [{"name": "main", "image": "busybox:1.36",
            "command": ["sh", "-c", "trap 'echo term >> /shared/probe; exit 0' TERM; while true; do sleep 0.1; done"],
            "volumeMounts": [{"name": "shared", "mountPath": "/shared"}],
            "livenessProbe": {"exec": {"command": ["cat", "/nonexistent"]}, "periodSeconds": 1, "failureThreshold": 1},
            "lifecycle": {"preStop": {"exec": {"command": ["sh", "-c", "echo prestop >> /shared/probe"]}}}}]}}"#
        .replace("SHARED", shared.to_str().unwrap());
    kubectl.ok_stdin(&["apply", "-f", "-"], &manifest);
    eventually(
        "the unhealthy container restarts",
        Duration::from_secs(40),
        || restarted(server, "unhealthy"),
    );
    let stops = std::fs::read_to_string(shared.join("probe")).unwrap();
    assert!(stops.starts_with("prestop\nterm\n"), "{stops}");
    let last =
        &pod_json(server, "unhealthy").unwrap()["status"]["containerStatuses"][0]["lastState"];
    assert_eq!(
        last["terminated"]["exitCode"], 0,
        "ended by its TERM trap: {last}"
    );
    kubectl.ok(&["delete", "pod", "unhealthy", "--wait=true"]);

    // The probe's own grace period, not the pod's, bounds a stop it causes: a container
    // that ignores SIGTERM is killed after 1 s, not 60.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "stubborn"},
            "spec": {"terminationGracePeriodSeconds": 60, "containers": [{"name": "main", "image": "busybox:1.36",
              "command": ["sh", "-c", "trap '' TERM; while true; do sleep 0.1; done"],
              "livenessProbe": {"exec": {"command": ["cat", "/nonexistent"]}, "periodSeconds": 1,
                                "failureThreshold": 1, "terminationGracePeriodSeconds": 1}}]}}"#,
    );
    eventually(
        "the stubborn container is killed after the probe's grace",
        Duration::from_secs(20),
        || {
            pod_json(server, "stubborn").is_some_and(|p| {
                p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] == 137
            })
        },
    );
    kubectl.ok(&["delete", "pod", "stubborn", "--grace-period=0", "--force"]);

    // A failing postStart kills the run, which restarts.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "badhook"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [{"name": "main", "image": "busybox:1.36",
              "command": ["sleep", "3600"],
              "lifecycle": {"postStart": {"exec": {"command": ["sh", "-c", "exit 9"]}}}}]}}"#,
    );
    eventually(
        "the failed hook restarts the container",
        Duration::from_secs(40),
        || restarted(server, "badhook"),
    );
    let events = events_of(&kubectl, "badhook");
    assert!(events.contains("FailedPostStartHook"), "{events}");
    kubectl.ok(&["delete", "pod", "badhook", "--wait=true"]);
}

/// Types `text` into an attach session every 250 ms (for up to a minute) until told the
/// answer came back: what is typed before the session is up is never seen, and on a loaded
/// machine that can take a while.
struct Typer {
    answered: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Typer {
    fn start(mut to: impl std::io::Write + Send + 'static, text: String) -> Typer {
        let answered = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stop = answered.clone();
        let thread = std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop.load(std::sync::atomic::Ordering::SeqCst)
                && std::time::Instant::now() < deadline
            {
                if to.write_all(text.as_bytes()).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(250));
            }
        });
        Typer { answered, thread }
    }

    /// Stops typing.
    fn answered(self) {
        self.answered
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.thread.join();
    }
}

#[test]
fn kubectl_attach_streams_output_and_feeds_stdin() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "chatty"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
              {"name": "main", "image": "busybox:1.36", "stdin": true,
               "command": ["sh", "-c", "echo ready; while read line; do echo \"got $line\"; echo \"err $line\" >&2; done"]}]}}"#,
    );
    kubectl.ok(&[
        "wait",
        "pod/chatty",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    // WebSocket (1.33) and SPDY (1.28): what is typed reaches the container, what it
    // writes comes back, stdout and stderr apart.
    for (minor, word) in [(33, "alpha"), (28, "beta")] {
        let mut attach = server
            .kubectl(minor)
            .command(&["attach", "-i", "chatty"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = attach.stdin.take().unwrap();
        let stderr = attach.stderr.take().unwrap();
        let (err_tx, err_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            let found = std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("err "));
            let _ = err_tx.send(found);
        });
        let typer = Typer::start(stdin, format!("{word}\n"));
        let lines = read_lines(&mut attach, 1, Duration::from_secs(60));
        typer.answered();
        assert_eq!(lines, [format!("got {word}")], "1.{minor}");
        // Stderr travels apart from stdout: wait for it before stopping kubectl.
        let error_line = err_rx.recv_timeout(Duration::from_secs(10)).ok().flatten();
        let _ = attach.kill();
        let _ = attach.wait();
        assert_eq!(error_line, Some(format!("err {word}")), "1.{minor}");
    }

    // A container with its own terminal (kubectl run -it's kind): an interactive shell,
    // driven through kubectl attach -it in a terminal of ours.
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shell-tty"},
            "spec": {"terminationGracePeriodSeconds": 1, "containers": [
              {"name": "main", "image": "busybox:1.36", "stdin": true, "tty": true, "command": ["sh"]}]}}"#,
    );
    kubectl.ok(&[
        "wait",
        "pod/shell-tty",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    let mut attach = in_script(&kubectl, &["attach", "-it", "shell-tty"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = attach.stdin.take().unwrap();
    let typer = Typer::start(stdin, "tty; echo answer-$((6*7))\r".into());
    let output = read_lines_until(&mut attach, Duration::from_secs(60), |lines| {
        lines.iter().any(|l| l.contains("answer-42"))
    });
    typer.answered();
    let _ = attach.kill();
    let _ = attach.wait();
    assert!(
        output.iter().any(|l| l.contains("answer-42")),
        "the shell answered: {output:?}"
    );
    assert!(
        output.iter().any(|l| l.contains("/dev/pts/")),
        "the container has a terminal: {output:?}"
    );
    kubectl.ok(&["delete", "pod", "chatty", "shell-tty", "--wait=true"]);

    // stdinOnce (kubectl run -i's kind): the end of the first session's input is the end
    // of the container's, so a command that reads to the end finishes, and the pod too.
    for minor in [33, 28] {
        let k = server.kubectl(minor);
        let name = format!("catter-{minor}");
        let out = k.run_with_stdin(
            &[
                "run",
                &name,
                "-i",
                "--rm",
                "--restart=Never",
                "--image=busybox:1.36",
                "--",
                "cat",
            ],
            "piped through\n",
        );
        assert!(out.status.success(), "1.{minor}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("piped through"),
            "1.{minor}: {out:?}"
        );
        // --rm asked for the delete; the node finishes it.
        eventually(
            &format!("1.{minor}: --rm deleted it"),
            Duration::from_secs(30),
            || pod_json(server, &name).is_none(),
        );
    }
}

/// hostNetwork: the pod lives in the node's network namespace (here the test's node
/// namespace) with the node's address and name; its readiness probe finds it there.
/// hostPID and hostIPC: it sees the node's processes and shares its IPC namespace.
#[test]
fn host_network_pods_live_in_the_nodes_network() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "hostnet"},
           "spec": {"hostNetwork": true, "hostPID": true, "hostIPC": true, "terminationGracePeriodSeconds": 1,
             "containers": [{"name": "web", "image": "busybox:1.36",
               "command": ["httpd", "-f", "-p", "8089", "-h", "/etc"],
               "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8089}, "periodSeconds": 1}}]}}"#,
    );
    kubectl.ok(&[
        "wait",
        "pod/hostnet",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    let pod = pod_json(server, "hostnet").unwrap();
    assert_eq!(pod["status"]["podIP"], "127.0.0.1", "the node's address");
    let machine = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let served = http_get(&node.netns.net(), "http://127.0.0.1:8089/hostname");
    assert_eq!(served.as_deref().map(str::trim), Some(machine.trim()));
    // The node reports the image it now holds.
    eventually(
        "the image in the node's status",
        Duration::from_secs(30),
        || {
            kubectl
                .ok(&[
                    "get",
                    "node",
                    NODE,
                    "-o",
                    "jsonpath={.status.images[*].names}",
                ])
                .contains("docker.io/library/busybox:1.36")
        },
    );
    let sh = |script: &str| kubectl.ok(&["exec", "hostnet", "--", "sh", "-c", script]);
    let pid_one = std::fs::read_to_string("/proc/1/comm").unwrap();
    assert_eq!(sh("cat /proc/1/comm"), pid_one, "the node's PID 1");
    let ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert_eq!(
        sh("readlink /proc/self/ns/ipc").trim(),
        ipc.to_string_lossy()
    );
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    kubectl.ok(&["delete", "pod", "hostnet", "--wait=true"]);
    node.await_no_pods();
    node.assert_left_clean(&[uid]);
}

/// shareProcessNamespace: the pod's containers share one PID namespace, whose PID 1 is the
/// node's holder; a container's restart leaves the others running; the holder goes with
/// the pod.
#[test]
fn pods_that_share_their_processes_see_each_other() {
    let node = Node::start();
    let server = &node.server;
    let kubectl = server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "shared"},
           "spec": {"shareProcessNamespace": true, "terminationGracePeriodSeconds": 1,
             "containers": [
               {"name": "a", "image": "busybox:1.36", "command": ["sleep", "1001"]},
               {"name": "b", "image": "busybox:1.36", "command": ["sleep", "1002"]}]}}"#,
    );
    kubectl.ok(&[
        "wait",
        "pod/shared",
        "--for=condition=Ready",
        "--timeout=60s",
    ]);
    let processes = |container: &str| {
        kubectl.ok(&[
            "exec",
            "shared",
            "-c",
            container,
            "--",
            "sh",
            "-c",
            "for p in /proc/[0-9]*; do cat $p/cmdline; echo; done",
        ])
    };
    let seen = processes("b");
    assert!(
        seen.contains("sleep\u{0}1001"),
        "b sees a's process: {seen:?}"
    );
    assert!(
        seen.lines().next().unwrap().contains("pod-init"),
        "PID 1: {seen:?}"
    );
    // a's restart leaves b as it was, and a comes back into the same namespace.
    let pod = pod_json(server, "shared").unwrap();
    node.kill_and_await_restart(&pod, "a");
    let pod = pod_json(server, "shared").unwrap();
    assert_eq!(pod["status"]["containerStatuses"][1]["restartCount"], 0);
    assert!(processes("b").contains("sleep\u{0}1001"));
    let holder: i32 = std::fs::read_to_string(
        node.data
            .join("pods")
            .join(pod["metadata"]["uid"].as_str().unwrap())
            .join("pid-holder"),
    )
    .unwrap()
    .trim()
    .parse()
    .unwrap();
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    kubectl.ok(&["delete", "pod", "shared", "--wait=true"]);
    node.await_no_pods();
    node.assert_left_clean(&[uid]);
    // Gone, or a zombie its new parent has yet to reap.
    let state = std::fs::read_to_string(format!("/proc/{holder}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("State:"))
        .unwrap_or_default()
        .to_string();
    assert!(
        state.is_empty() || state.contains("zombie"),
        "the holder went with the pod: {state}"
    );
}

#[test]
fn node_reset_takes_back_everything_the_agent_made() {
    let mut node = Node::start();
    let kubectl = node.server.kubectl(33);
    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "left-running"},
            "spec": {"containers": [{"name": "sleep", "image": "busybox:1.36",
                       "command": ["sleep", "3600"],
                       "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                     "volumes": [{"name": "scratch", "emptyDir": {"medium": "Memory"}}]}}"#,
    );
    eventually("the pod runs", Duration::from_secs(60), || {
        pod_json(&node.server, "left-running").is_some_and(|p| p["status"]["phase"] == "Running")
    });
    let uid = pod_json(&node.server, "left-running").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let data = node.data.to_str().unwrap().to_string();
    let netns = node.netns.net().to_str().unwrap().to_string();
    let reset = || {
        Command::new(skiff_e2e::skiff_binary())
            .args(["node", "reset", "--data-dir", &data, "--node-netns", &netns])
            .output()
            .expect("run skiff node reset")
    };

    // Not while the agent runs: it would make again what reset removes.
    let refused = reset();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("skiff agent") && said.contains("stop it first"),
        "{said}"
    );

    let vxlan =
        skiff_net::Netns::Path(node.netns.net()).ip(&["link", "show", "dev", "skiff.vxlan"]);
    assert!(vxlan.is_ok(), "the agent made its VXLAN link: {vxlan:?}");

    // Stopped skiff leaves its containers running, by design.
    node.stop_agent();
    let runc_root = skiff_agent::kubelet::runtime_root(&node.data, std::path::Path::new("runc"));
    let listed = Command::new("runc")
        .arg("--root")
        .arg(&runc_root)
        .args(["list", "-q"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&listed.stdout).trim().is_empty());

    let done = reset();
    assert!(
        done.status.success(),
        "{}",
        String::from_utf8_lossy(&done.stderr)
    );
    node.assert_left_clean(&[uid]);
    let processes: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&data))
        .collect();
    assert!(processes.is_empty(), "left running: {processes:?}");
    let node_ns = skiff_net::Netns::Path(node.netns.net());
    for link in ["skiff0", "skiff.vxlan"] {
        let left = node_ns.ip(&["link", "show", "dev", link]);
        assert!(left.is_err(), "{link} is gone: {left:?}");
    }

    // And again: nothing to do, still a success.
    let again = reset();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

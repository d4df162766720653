//! crun as the node's OCI runtime (`skiff agent --runtime crun`), as root, with the same
//! node fixture as the runc tests (tests/agent.rs).
//!
//! crun refuses a hybrid cgroup layout whose v2 tree holds controllers — this machine's:
//! hugetlb is in no v1 hierarchy — so the agent refuses to start with it there, saying so,
//! and the test then does what it tells an operator: it gives those controllers v1
//! hierarchies for its length. Unmounting them hands the controllers back to v2. It runs
//! in a binary of its own so that no runc pod of another test gets cgroups in them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use skiff_e2e::node::{NODE, Node, container_pid, http_get, pod_json};
use skiff_e2e::{TestServer, eventually};

/// The agent, started with crun on a layout crun refuses, stops with the cause and the fix.
fn refused_on_this_layout(held_back: &[String]) {
    let server = TestServer::start_api_only();
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(skiff_e2e::skiff_binary())
        .args(["agent", "--runtime", "crun", "--node-ip", "127.0.0.1"])
        .args(["--kubelet-address", "127.0.0.1", "--kubelet-port", "0"])
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("crun does not run containers on a hybrid cgroup layout")
            && stderr.contains(&format!("mount -t cgroup -o {0} {0}", held_back[0]))
            && stderr.contains("--runtime runc"),
        "{stderr}"
    );
}

/// v1 hierarchies, at `/sys/fs/cgroup/<controller>`, for controllers the hybrid layout left
/// in its v2 tree; unmounted, with the controllers back in v2, when dropped.
struct V1Hierarchies(Vec<(String, PathBuf)>);

fn mount_v1(controller: &str, dir: &Path) -> bool {
    Command::new("mount")
        .args(["-t", "cgroup", "-o", controller, controller])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

fn umount(dir: &Path) {
    let _ = Command::new("umount").arg(dir).status();
}

/// Removes the cgroups under `dir`, deepest first (the pods' are gone already; their
/// common parent `skiff` is left).
fn remove_cgroups_under(dir: &Path) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            remove_cgroups_under(&entry.path());
            let _ = std::fs::remove_dir(entry.path());
        }
    }
}

impl V1Hierarchies {
    fn mount(controllers: &[String]) -> V1Hierarchies {
        let mut mounted = V1Hierarchies(Vec::new());
        for c in controllers {
            let dir = PathBuf::from("/sys/fs/cgroup").join(c);
            std::fs::create_dir_all(&dir).unwrap();
            assert!(mount_v1(c, &dir), "mounting a v1 hierarchy for {c}");
            mounted.0.push((c.clone(), dir));
        }
        mounted
    }
}

impl Drop for V1Hierarchies {
    fn drop(&mut self) {
        for (c, dir) in &self.0 {
            remove_cgroups_under(dir);
            umount(dir);
            // The kernel frees a v1 hierarchy (and its controller goes back to v2) only if it
            // is unmounted with no cgroups, dying ones included: those just removed may still
            // be dying, so until it is back, mount it again and let go.
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(500));
                if skiff_runtime::cgroups::hybrid_v2_controllers().contains(c) {
                    break;
                }
                if mount_v1(c, dir) {
                    umount(dir);
                }
            }
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// crun in runc's place: the same pods run, restart, stop at their limits, are adopted by
/// a restarted agent and leave nothing behind.
#[test]
fn crun_runs_pods_as_runc_does() {
    skiff_e2e::assert_root();
    let held_back = skiff_runtime::cgroups::hybrid_v2_controllers();
    if !held_back.is_empty() {
        refused_on_this_layout(&held_back);
    }
    let _v1 = V1Hierarchies::mount(&held_back);
    let mut node = Node::start_with_runtime("crun");
    let data = node.data.clone();
    let kubectl = node.server.kubectl(33);
    let info = kubectl.json(&["get", "node", NODE, "-o", "json"]);
    let version = info["status"]["nodeInfo"]["containerRuntimeVersion"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(version.starts_with("crun://1."), "{version}");

    kubectl.ok_stdin(
        &["apply", "-f", "-"],
        r#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{"name": "httpd", "image": "busybox:1.36",
              "command": ["sh", "-c", "echo serving; exec httpd -f -p 8080 -h /etc"],
              "securityContext": {"runAsUser": 1000, "readOnlyRootFilesystem": true},
              "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
              "readinessProbe": {"httpGet": {"path": "/hostname", "port": 8080}, "periodSeconds": 1}}]}}
---
{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "oom"},
           "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "busybox:1.36",
             "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
             "resources": {"limits": {"memory": "16Mi"}}}]}}"#,
    );
    kubectl.ok(&["wait", "pod/web", "--for=condition=Ready", "--timeout=60s"]);
    let web = pod_json(&node.server, "web").unwrap();
    let c = &web["status"]["containerStatuses"][0];
    assert!(
        c["containerID"].as_str().unwrap().starts_with("crun://"),
        "{c}"
    );
    let ip = web["status"]["podIP"].as_str().unwrap();
    let hostname = http_get(&node.netns.net(), &format!("http://{ip}:8080/hostname"));
    assert_eq!(hostname.as_deref().map(str::trim), Some("web"));

    // The security context and limits as the runtime applied them; exit codes; logs.
    assert_eq!(kubectl.ok(&["exec", "web", "--", "id", "-u"]), "1000\n");
    let out = kubectl.run(&["exec", "web", "--", "touch", "/written"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Read-only file system"),
        "{out:?}"
    );
    let out = kubectl.run(&["exec", "web", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(kubectl.ok(&["logs", "web"]), "serving\n");
    eventually(
        "a memory limit yields OOMKilled",
        Duration::from_secs(30),
        || {
            pod_json(&node.server, "oom").is_some_and(|p| {
                let t = &p["status"]["containerStatuses"][0]["state"]["terminated"];
                t["reason"] == "OOMKilled" && t["exitCode"] == 137
            })
        },
    );

    // kill -9: restarted; an agent restart then adopts the new process.
    node.kill_and_await_restart(&web, "httpd");
    let before = container_pid(&data, &web, "httpd", 1);
    node.restart_agent();
    std::thread::sleep(Duration::from_secs(3));
    let after = pod_json(&node.server, "web").unwrap();
    assert_eq!(after["status"]["containerStatuses"][0]["restartCount"], 1);
    assert_eq!(container_pid(&data, &after, "httpd", 1), before);

    // Deleting leaves no container, mount or cgroup.
    let uids: Vec<String> = ["web", "oom"]
        .iter()
        .map(|name| {
            let pod = pod_json(&node.server, name).unwrap();
            pod["metadata"]["uid"].as_str().unwrap().to_string()
        })
        .collect();
    kubectl.ok(&["delete", "pods", "--all", "--wait=false"]);
    node.await_no_pods();
    node.assert_left_clean(&uids);
}

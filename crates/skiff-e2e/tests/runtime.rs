//! The container runtime layer as root with real runc: a pod sandbox of pinned namespaces
//! (its own hostname, only loopback), containers on an overlay of a busybox image layer,
//! started through the container monitor (the real `skiff` binary), with CRI logs, exit
//! codes, signals, an OOM kill, Kubernetes' security defaults — and nothing left behind.
//! No traffic leaves the pod's network namespace, which has no interface but loopback.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use skiff_image::build::Compression;
use skiff_runtime::monitor::{Exit, MonitorConfig};
use skiff_runtime::rootfs::Rootfs;
use skiff_runtime::sandbox::Sandbox;
use skiff_runtime::spec::{ContainerSpec, Resources, SharedNamespaces, runtime_config};
use skiff_runtime::{OciRuntime, Runtime};

/// A layer holding Debian's static busybox and the applets the tests call.
fn busybox_layer(dir: &Path) -> PathBuf {
    let applets = ["sh", "sleep", "hostname", "ip", "cat", "grep", "dd", "id"];
    let layer = skiff_e2e::images::busybox_layer_builder(&applets).finish(Compression::None);
    let out = dir.join("layer");
    std::fs::create_dir_all(&out).unwrap();
    skiff_image::unpack::unpack_layer(&layer.bytes[..], &out, &Default::default()).unwrap();
    out
}

struct Pod {
    dir: PathBuf,
    runtime: OciRuntime,
    sandbox: Sandbox,
    layer: PathBuf,
    cgroup_parent: String,
}

impl Pod {
    fn container(&self, name: &str, args: &[&str], resources: Resources) -> (String, PathBuf) {
        let id = format!(
            "{}-{name}",
            self.cgroup_parent.trim_start_matches('/').replace('/', "-")
        );
        let bundle = self.dir.join(name);
        Rootfs::at(&bundle)
            .mount(std::slice::from_ref(&self.layer))
            .unwrap();
        let spec = ContainerSpec {
            args: args.iter().map(|s| s.to_string()).collect(),
            env: vec!["PATH=/bin".into()],
            rootfs: bundle.join("rootfs"),
            namespaces: SharedNamespaces {
                network: Some(self.sandbox.net()),
                ipc: Some(self.sandbox.ipc()),
                uts: Some(self.sandbox.uts()),
                pid: None,
            },
            cgroups_path: format!("{}/{name}", self.cgroup_parent),
            resources,
            ..Default::default()
        };
        std::fs::write(
            bundle.join("config.json"),
            serde_json::to_vec(&runtime_config(&spec).unwrap()).unwrap(),
        )
        .unwrap();
        let config = MonitorConfig {
            runtime_binary: self.runtime.binary().to_path_buf(),
            runtime_root: self.runtime.root().to_path_buf(),
            id: id.clone(),
            bundle: bundle.clone(),
            log: self.dir.join("logs").join(name).join("0.log"),
            cgroups_path: spec.cgroups_path.clone(),
            log_max_size: 10 << 20,
            log_max_files: 5,
            exit_notice: Some(bundle.join(NOTICE)),
        };
        // The monitor creates and starts it.
        skiff_runtime::monitor::spawn(&skiff_e2e::skiff_binary(), &config).unwrap();
        (id, bundle)
    }

    fn cgroup_root(&self) -> String {
        let top = self
            .cgroup_parent
            .trim_start_matches('/')
            .split('/')
            .next()
            .unwrap();
        format!("/{top}")
    }

    /// Containers, root filesystems, namespaces and cgroups: all gone.
    fn clean_up(&self) -> std::io::Result<()> {
        for state in self.runtime.list().unwrap_or_default() {
            self.runtime
                .delete(&state.id, true)
                .map_err(std::io::Error::other)?;
            Rootfs::at(&state.bundle).remove()?;
        }
        self.sandbox.remove().map_err(std::io::Error::other)?;
        skiff_runtime::cgroups::remove(&self.cgroup_root())
    }

    fn log(&self, name: &str) -> Vec<String> {
        let text = std::fs::read_to_string(self.dir.join("logs").join(name).join("0.log")).unwrap();
        // Drop the timestamps: "<time> <stream> <tag> <content>".
        text.lines()
            .map(|l| l.split_once(' ').unwrap().1.to_string())
            .collect()
    }
}

impl Drop for Pod {
    /// A failing test leaves nothing behind either.
    fn drop(&mut self) {
        let _ = self.clean_up();
    }
}

/// The file each monitor here is told to create once it recorded the exit.
const NOTICE: &str = "exited-notice";

/// The recorded exit, once the monitor also left its notice.
fn wait_exit(bundle: &Path) -> Exit {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(exit) = Exit::read(bundle)
            && bundle.join(NOTICE).exists()
        {
            return exit;
        }
        assert!(
            Instant::now() < deadline,
            "no exit recorded in {}",
            bundle.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn containers_run_in_a_pod_sandbox_with_logs_exit_codes_limits_and_defaults() {
    skiff_e2e::assert_root();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let runtime = OciRuntime::new("runc", dir.join("runc"));
    let sandbox = Sandbox::at(dir.join("ns"));
    sandbox.create("pod-a").unwrap();
    assert!(sandbox.exists());
    let pod = Pod {
        dir: dir.clone(),
        runtime,
        sandbox,
        layer: busybox_layer(&dir),
        cgroup_parent: format!("/skiff-e2e-{}/pod-a", std::process::id()),
    };

    // Output, exit code, the pod's hostname and its loopback-only network.
    let (c1, b1) = pod.container(
        "c1",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; hostname; ip -o link | cut -d: -f2; exit 3",
        ],
        Resources::default(),
    );
    let exit = wait_exit(&b1);
    assert_eq!(
        (exit.exit_code, exit.signal, exit.oom_killed),
        (3, None, false)
    );
    let log = pod.log("c1");
    assert!(log.contains(&"stdout F hello".to_string()), "{log:?}");
    assert!(log.contains(&"stderr F oops".to_string()), "{log:?}");
    assert!(log.contains(&"stdout F pod-a".to_string()), "{log:?}");

    // Kubernetes' security defaults, as the kernel reports them.
    let (c2, b2) = pod.container(
        "c2",
        &[
            "sh",
            "-c",
            "grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; id -u",
        ],
        Resources::default(),
    );
    assert_eq!(wait_exit(&b2).exit_code, 0);
    let log = pod.log("c2");
    assert!(
        log.contains(&"stdout F CapEff:\t00000000a80425fb".to_string()),
        "{log:?}"
    );
    assert!(
        log.contains(&"stdout F NoNewPrivs:\t1".to_string()),
        "{log:?}"
    );
    assert!(log.contains(&"stdout F Seccomp:\t2".to_string()), "{log:?}");

    // Long-running containers: one handles SIGTERM; a PID 1 without a handler ignores it
    // (as in any PID namespace) and goes with SIGKILL.
    let (c3, b3) = pod.container(
        "c3",
        &[
            "sh",
            "-c",
            "trap 'echo bye; exit 143' TERM; while true; do sleep 0.1; done",
        ],
        Resources::default(),
    );
    let (c5, b5) = pod.container("c5", &["sleep", "1000"], Resources::default());
    assert_eq!(pod.runtime.state(&c3).unwrap().unwrap().status, "running");
    const SIGTERM: i32 = 15;
    const SIGKILL: i32 = 9;
    pod.runtime.kill(&c3, SIGTERM).unwrap();
    let exit = wait_exit(&b3);
    assert_eq!((exit.exit_code, exit.signal), (143, None));
    assert_eq!(
        pod.log("c3").last().map(String::as_str),
        Some("stdout F bye")
    );
    pod.runtime.kill(&c5, SIGKILL).unwrap();
    let exit = wait_exit(&b5);
    assert_eq!((exit.exit_code, exit.signal), (137, Some(9)));

    // A memory limit the process exceeds: OOM-killed.
    let limited = Resources {
        memory_limit: Some(16 << 20),
        pids_limit: Some(32),
        ..Default::default()
    };
    let (c4, b4) = pod.container(
        "c4",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"],
        limited,
    );
    let exit = wait_exit(&b4);
    assert_eq!((exit.exit_code, exit.oom_killed), (137, true), "{exit:?}");

    // Clean-up leaves nothing: containers, mounts, namespaces, cgroups.
    pod.clean_up().unwrap();
    assert!(pod.runtime.list().unwrap().is_empty());
    assert!(!pod.sandbox.exists());
    assert!(!skiff_runtime::cgroups::exists(&pod.cgroup_root()));
    assert_eq!(
        skiff_e2e::mounts_under(&dir),
        Vec::<std::path::PathBuf>::new()
    );
    let _ = (c1, c2, c4);
}

//! The OCI runtime configuration (`config.json`) of a container, with the defaults a
//! Kubernetes node gives every container (containerd's CRI defaults, which are upstream's
//! de facto): the default capability set, no new privileges unless asked, masked and
//! read-only `/proc` and `/sys` paths, the RuntimeDefault seccomp profile, and the standard
//! mounts. Privileged containers get every capability, no masks and no seccomp filter.

use std::path::PathBuf;

use serde_json::{Value, json};

/// The capabilities every container has unless it drops them (containerd's default set).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability this kernel generation knows (for privileged containers).
const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Syscalls the RuntimeDefault profile refuses (EPERM): kernel modules and keyrings, clock
/// and reboot, mounting and namespaces, tracing other processes, and the rest of the set
/// Docker's and containerd's default profiles leave out for unprivileged containers.
const SECCOMP_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "quotactl_fd",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "stime",
    "swapoff",
    "swapon",
    "syslog",
    "sysfs",
    "_sysctl",
    "umount",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Seccomp {
    #[default]
    RuntimeDefault,
    Unconfined,
}

/// What a container may do beyond running its process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Security {
    pub privileged: bool,
    /// Capability names as Kubernetes writes them (`NET_ADMIN`) or with the `CAP_` prefix.
    pub add_capabilities: Vec<String>,
    pub drop_capabilities: Vec<String>,
    /// `allowPrivilegeEscalation: true` lifts no_new_privileges.
    pub allow_privilege_escalation: bool,
    pub readonly_rootfs: bool,
    pub seccomp: Seccomp,
}

/// cgroup limits, already in the kernel's units.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// CPU bandwidth per 100 ms period, in microseconds (from the CPU limit).
    pub cpu_quota: Option<i64>,
    /// Relative weight (from the CPU request).
    pub cpu_shares: Option<u64>,
    pub memory_limit: Option<i64>,
    pub pids_limit: Option<i64>,
}

pub const CPU_PERIOD: u64 = 100_000;

impl Resources {
    /// From Kubernetes millicores and bytes, as the kubelet converts them.
    pub fn from_kubernetes(
        cpu_request_millis: Option<i64>,
        cpu_limit_millis: Option<i64>,
        memory_limit: Option<i64>,
        pids_limit: Option<i64>,
    ) -> Resources {
        Resources {
            // At least 1 ms per period: the kernel refuses smaller quotas.
            cpu_quota: cpu_limit_millis.map(|m| (m * CPU_PERIOD as i64 / 1000).max(1000)),
            cpu_shares: Some(cpu_request_millis.map_or(2, |m| ((m * 1024 / 1000) as u64).max(2))),
            memory_limit,
            pids_limit,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    Bind,
    Tmpfs,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub destination: String,
    pub source: PathBuf,
    pub kind: MountKind,
    pub readonly: bool,
}

/// Namespaces the container joins (a path) rather than gets new. The mount namespace is
/// always the container's own.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedNamespaces {
    pub network: Option<PathBuf>,
    pub ipc: Option<PathBuf>,
    pub uts: Option<PathBuf>,
    /// None: a PID namespace of the container's own (the pod's `hostPID` joins the node's).
    pub pid: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSpec {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub tty: bool,
    pub rootfs: PathBuf,
    pub mounts: Vec<Mount>,
    pub namespaces: SharedNamespaces,
    /// `/skiff/<pod>/<container>`: absolute, from each hierarchy's root (a relative path
    /// is read against the runtime caller's own cgroup).
    pub cgroups_path: String,
    pub resources: Resources,
    pub security: Security,
    pub oom_score_adj: Option<i32>,
}

fn cap_name(name: &str) -> String {
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

fn capabilities(security: &Security) -> Vec<String> {
    if security.privileged {
        return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    }
    let drop: Vec<String> = security
        .drop_capabilities
        .iter()
        .map(|c| cap_name(c))
        .collect();
    let drop_all = drop.iter().any(|c| c == "CAP_ALL");
    let mut caps: Vec<String> = if drop_all {
        Vec::new()
    } else {
        DEFAULT_CAPABILITIES
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    for add in &security.add_capabilities {
        let add = cap_name(add);
        if add == "CAP_ALL" {
            return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        }
        if !caps.contains(&add) {
            caps.push(add);
        }
    }
    caps
}

fn seccomp_profile() -> Value {
    let arch = match std::env::consts::ARCH {
        "aarch64" => vec!["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        _ => vec!["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
    };
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": arch,
        "syscalls": [{"names": SECCOMP_DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": libc::EPERM}],
    })
}

fn standard_mounts(privileged: bool) -> Vec<Value> {
    let ro = if privileged { "rw" } else { "ro" };
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", ro]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", ro]}),
    ]
}

/// The `config.json` for a container.
pub fn runtime_config(spec: &ContainerSpec) -> Value {
    let security = &spec.security;
    let caps = capabilities(security);
    let mut mounts = standard_mounts(security.privileged);
    for m in &spec.mounts {
        let mut options = vec!["rbind", "rprivate"];
        options.push(if m.readonly { "ro" } else { "rw" });
        mounts.push(match m.kind {
            MountKind::Bind => json!({
                "destination": m.destination, "type": "bind",
                "source": m.source, "options": options,
            }),
            MountKind::Tmpfs => json!({
                "destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777"],
            }),
        });
    }
    // A new namespace of the kind, or the one at `path` joined.
    let namespace = |kind: &str, path: &Option<PathBuf>| match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    };
    let mut namespaces = vec![
        namespace("pid", &spec.namespaces.pid),
        json!({"type": "mount"}),
    ];
    for (kind, path) in [
        ("network", &spec.namespaces.network),
        ("ipc", &spec.namespaces.ipc),
        ("uts", &spec.namespaces.uts),
    ] {
        namespaces.push(namespace(kind, path));
    }
    let mut resources = json!({
        "devices": [{"allow": false, "access": "rwm"}],
        "cpu": {"period": CPU_PERIOD},
    });
    if security.privileged {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    if let Some(q) = spec.resources.cpu_quota {
        resources["cpu"]["quota"] = q.into();
    }
    if let Some(s) = spec.resources.cpu_shares {
        resources["cpu"]["shares"] = s.into();
    }
    if let Some(m) = spec.resources.memory_limit {
        // Swap as much as memory: no swap beyond the limit.
        resources["memory"] = json!({"limit": m, "swap": m});
    }
    if let Some(p) = spec.resources.pids_limit {
        resources["pids"] = json!({"limit": p});
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": spec.cgroups_path,
        "resources": resources,
    });
    if !security.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
        if security.seccomp == Seccomp::RuntimeDefault {
            linux["seccomp"] = seccomp_profile();
        }
    }
    let mut process = json!({
        "terminal": spec.tty,
        "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
        "args": spec.args,
        "env": spec.env,
        "cwd": if spec.cwd.is_empty() { "/" } else { spec.cwd.as_str() },
        "capabilities": {
            "bounding": caps, "effective": caps, "permitted": caps,
            // Ambient only for root-free processes that were granted the capability;
            // upstream leaves it empty and so does skiff.
            "inheritable": [], "ambient": [],
        },
        // No rlimits: the container inherits the node's, as under containerd.
        "noNewPrivileges": !security.allow_privilege_escalation && !security.privileged,
    });
    if let Some(adj) = spec.oom_score_adj {
        process["oomScoreAdj"] = adj.into();
    }
    json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": spec.rootfs, "readonly": security.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(config: &Value) -> Vec<String> {
        serde_json::from_value(config["process"]["capabilities"]["bounding"].clone()).unwrap()
    }

    #[test]
    fn containers_get_kubernetes_defaults() {
        let spec = ContainerSpec {
            args: vec!["sh".into()],
            rootfs: "/r".into(),
            cgroups_path: "/skiff/pod1/c1".into(),
            namespaces: SharedNamespaces {
                network: Some("/run/skiff/ns/net".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let c = runtime_config(&spec);
        assert_eq!(caps(&c).len(), 14);
        assert_eq!(c["process"]["noNewPrivileges"], true);
        assert_eq!(c["process"]["cwd"], "/");
        assert!(
            c["linux"]["maskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/kcore"))
        );
        assert!(
            c["linux"]["readonlyPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/proc/sys"))
        );
        assert_eq!(c["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");
        let denied = &c["linux"]["seccomp"]["syscalls"][0]["names"];
        assert!(denied.as_array().unwrap().contains(&json!("mount")));
        assert_eq!(
            c["linux"]["namespaces"][2],
            json!({"type": "network", "path": "/run/skiff/ns/net"})
        );
        assert_eq!(c["linux"]["namespaces"][3], json!({"type": "ipc"}));
        assert_eq!(c["linux"]["cgroupsPath"], "/skiff/pod1/c1");
        let sys = c["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/sys")
            .unwrap();
        assert!(sys["options"].as_array().unwrap().contains(&json!("ro")));
    }

    #[test]
    fn security_context_changes_capabilities_and_privileges() {
        let mut spec = ContainerSpec::default();
        spec.security.drop_capabilities = vec!["NET_RAW".into(), "chown".into()];
        spec.security.add_capabilities = vec!["NET_ADMIN".into()];
        let c = caps(&runtime_config(&spec));
        assert!(!c.contains(&"CAP_NET_RAW".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        spec.security.drop_capabilities = vec!["ALL".into()];
        spec.security.add_capabilities = vec!["NET_BIND_SERVICE".into()];
        assert_eq!(caps(&runtime_config(&spec)), ["CAP_NET_BIND_SERVICE"]);
        spec.security.allow_privilege_escalation = true;
        spec.security.readonly_rootfs = true;
        let c = runtime_config(&spec);
        assert_eq!(c["process"]["noNewPrivileges"], false);
        assert_eq!(c["root"]["readonly"], true);

        let privileged = ContainerSpec {
            security: Security {
                privileged: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let c = runtime_config(&privileged);
        assert!(caps(&c).contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(c["linux"].get("maskedPaths").is_none());
        assert!(c["linux"].get("seccomp").is_none());
        assert_eq!(c["linux"]["resources"]["devices"][0]["allow"], true);
    }

    #[test]
    fn kubernetes_resources_become_cgroup_limits() {
        let r = Resources::from_kubernetes(Some(250), Some(500), Some(64 << 20), Some(100));
        assert_eq!(r.cpu_quota, Some(50_000));
        assert_eq!(r.cpu_shares, Some(256));
        let c = runtime_config(&ContainerSpec {
            resources: r,
            ..Default::default()
        });
        assert_eq!(
            c["linux"]["resources"]["cpu"],
            json!({"period": 100000, "quota": 50000, "shares": 256})
        );
        assert_eq!(c["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(c["linux"]["resources"]["pids"]["limit"], 100);
        // BestEffort: the minimum weight, no quota.
        let best = Resources::from_kubernetes(None, None, None, None);
        assert_eq!((best.cpu_quota, best.cpu_shares), (None, Some(2)));
        assert_eq!(
            Resources::from_kubernetes(None, Some(1), None, None).cpu_quota,
            Some(1000)
        );
    }
}

//! The OCI runtime configuration (`config.json`) of a container, with the defaults a
//! Kubernetes node gives every container (containerd's CRI defaults, which are upstream's
//! de facto): the default capability set, no new privileges unless asked, masked and
//! read-only `/proc` and `/sys` paths, the RuntimeDefault seccomp profile, and the standard
//! mounts. Privileged containers get every capability, no masks and no seccomp filter.

use std::path::PathBuf;

use std::str::FromStr;

use oci_spec::OciSpecError;
use oci_spec::runtime::Arch;
use oci_spec::runtime::{
    Capabilities, Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxPidsBuilder, LinuxResources, LinuxResourcesBuilder, LinuxSeccomp,
    LinuxSeccompAction, LinuxSeccompBuilder, LinuxSyscallBuilder, MountBuilder, ProcessBuilder,
    RootBuilder, Spec, SpecBuilder, UserBuilder,
};

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

/// Why a container's `config.json` could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("unknown capability {0:?}")]
    Capability(String),
    #[error("the OCI runtime spec: {0}")]
    Oci(#[from] OciSpecError),
}

/// A capability as Kubernetes writes it (`NET_ADMIN`, `net_admin`, `CAP_NET_ADMIN`).
fn capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    Capability::from_str(bare).map_err(|_| SpecError::Capability(name.to_string()))
}

fn all_capabilities() -> Result<Capabilities, SpecError> {
    ALL_CAPABILITIES.iter().map(|c| capability(c)).collect()
}

fn capabilities(security: &Security) -> Result<Capabilities, SpecError> {
    if security.privileged {
        return all_capabilities();
    }
    let drop_all = security
        .drop_capabilities
        .iter()
        .any(|c| c.eq_ignore_ascii_case("ALL"));
    let mut caps = Capabilities::new();
    if !drop_all {
        let drop: Capabilities = security
            .drop_capabilities
            .iter()
            .map(|c| capability(c))
            .collect::<Result<_, _>>()?;
        for c in DEFAULT_CAPABILITIES {
            let c = capability(c)?;
            if !drop.contains(&c) {
                caps.insert(c);
            }
        }
    }
    for add in &security.add_capabilities {
        if add.eq_ignore_ascii_case("ALL") {
            return all_capabilities();
        }
        caps.insert(capability(add)?);
    }
    Ok(caps)
}

fn seccomp_profile() -> Result<LinuxSeccomp, SpecError> {
    let architectures = match std::env::consts::ARCH {
        "aarch64" => vec![Arch::ScmpArchAarch64, Arch::ScmpArchArm],
        _ => vec![Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
    };
    let denied = LinuxSyscallBuilder::default()
        .names(
            SECCOMP_DENIED
                .iter()
                .map(|s| s.to_string())
                .collect::<Vec<_>>(),
        )
        .action(LinuxSeccompAction::ScmpActErrno)
        .errno_ret(libc::EPERM as u32)
        .build()?;
    Ok(LinuxSeccompBuilder::default()
        .default_action(LinuxSeccompAction::ScmpActAllow)
        .architectures(architectures)
        .syscalls(vec![denied])
        .build()?)
}

fn mount(
    destination: &str,
    typ: &str,
    source: impl Into<PathBuf>,
    options: &[&str],
) -> Result<oci_spec::runtime::Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source.into())
        .options(options.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .build()?)
}

fn standard_mounts(privileged: bool) -> Result<Vec<oci_spec::runtime::Mount>, SpecError> {
    let ro = if privileged { "rw" } else { "ro" };
    Ok(vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", ro])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", ro],
        )?,
    ])
}

/// A new namespace of the kind, or the one at `path` joined.
fn namespace(typ: LinuxNamespaceType, path: &Option<PathBuf>) -> Result<LinuxNamespace, SpecError> {
    let mut builder = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(p) = path {
        builder = builder.path(p.clone());
    }
    Ok(builder.build()?)
}

fn resources(spec: &ContainerSpec) -> Result<LinuxResources, SpecError> {
    let devices = LinuxDeviceCgroupBuilder::default()
        .allow(spec.security.privileged)
        .access("rwm")
        .build()?;
    let mut cpu = LinuxCpuBuilder::default().period(CPU_PERIOD);
    if let Some(q) = spec.resources.cpu_quota {
        cpu = cpu.quota(q);
    }
    if let Some(s) = spec.resources.cpu_shares {
        cpu = cpu.shares(s);
    }
    let mut resources = LinuxResourcesBuilder::default()
        .devices(vec![devices])
        .cpu(cpu.build()?);
    if let Some(m) = spec.resources.memory_limit {
        // Swap as much as memory: no swap beyond the limit.
        resources = resources.memory(LinuxMemoryBuilder::default().limit(m).swap(m).build()?);
    }
    if let Some(p) = spec.resources.pids_limit {
        resources = resources.pids(LinuxPidsBuilder::default().limit(p).build()?);
    }
    Ok(resources.build()?)
}

/// The `config.json` for a container.
pub fn runtime_config(spec: &ContainerSpec) -> Result<Spec, SpecError> {
    let security = &spec.security;
    let caps = capabilities(security)?;
    let mut mounts = standard_mounts(security.privileged)?;
    for m in &spec.mounts {
        mounts.push(match m.kind {
            MountKind::Bind => {
                let rw = if m.readonly { "ro" } else { "rw" };
                mount(
                    &m.destination,
                    "bind",
                    m.source.clone(),
                    &["rbind", "rprivate", rw],
                )?
            }
            MountKind::Tmpfs => mount(
                &m.destination,
                "tmpfs",
                "tmpfs",
                &["nosuid", "nodev", "mode=1777"],
            )?,
        });
    }
    let shared = &spec.namespaces;
    let namespaces = vec![
        namespace(LinuxNamespaceType::Pid, &shared.pid)?,
        namespace(LinuxNamespaceType::Mount, &None)?,
        namespace(LinuxNamespaceType::Network, &shared.network)?,
        namespace(LinuxNamespaceType::Ipc, &shared.ipc)?,
        namespace(LinuxNamespaceType::Uts, &shared.uts)?,
    ];
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(&spec.cgroups_path))
        .resources(resources(spec)?)
        .build()?;
    if security.privileged {
        linux.set_masked_paths(None).set_readonly_paths(None);
    } else {
        let paths = |list: &[&str]| list.iter().map(|p| p.to_string()).collect::<Vec<_>>();
        linux
            .set_masked_paths(Some(paths(MASKED_PATHS)))
            .set_readonly_paths(Some(paths(READONLY_PATHS)));
        if security.seccomp == Seccomp::RuntimeDefault {
            linux.set_seccomp(Some(seccomp_profile()?));
        }
    }
    let user = UserBuilder::default()
        .uid(spec.uid)
        .gid(spec.gid)
        .additional_gids(spec.additional_gids.clone())
        .build()?;
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        // Ambient only for root-free processes that were granted the capability;
        // upstream leaves it empty and so does skiff.
        .inheritable(Capabilities::new())
        .ambient(Capabilities::new())
        .build()?;
    let mut process = ProcessBuilder::default()
        .terminal(spec.tty)
        .user(user)
        .args(spec.args.clone())
        .env(spec.env.clone())
        .cwd(if spec.cwd.is_empty() {
            "/"
        } else {
            spec.cwd.as_str()
        })
        .capabilities(capabilities)
        .no_new_privileges(!security.allow_privilege_escalation && !security.privileged)
        .build()?;
    // No rlimits: the container inherits the node's, as under containerd.
    process
        .set_rlimits(None)
        .set_oom_score_adj(spec.oom_score_adj);
    let root = RootBuilder::default()
        .path(spec.rootfs.clone())
        .readonly(security.readonly_rootfs)
        .build()?;
    let mut config = SpecBuilder::default()
        .version("1.0.2")
        .process(process)
        .root(root)
        .mounts(mounts)
        .linux(linux)
        .build()?;
    config.set_hostname(None).set_annotations(None);
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn config(spec: &ContainerSpec) -> Value {
        serde_json::to_value(runtime_config(spec).unwrap()).unwrap()
    }

    fn caps(config: &Value) -> Vec<String> {
        let mut caps: Vec<String> =
            serde_json::from_value(config["process"]["capabilities"]["bounding"].clone()).unwrap();
        caps.sort();
        caps
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
        let c = config(&spec);
        assert_eq!(caps(&c).len(), 14);
        // None of oci-spec's own defaults (youki's) slip in: no rlimits (the node's are
        // inherited), no hostname (the UTS namespace has the pod's), no annotations.
        assert!(c["process"].get("rlimits").is_none(), "{c}");
        assert!(
            c.get("hostname").is_none() && c.get("annotations").is_none(),
            "{c}"
        );
        assert_eq!(c["ociVersion"], "1.0.2");
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
        let c = caps(&config(&spec));
        assert!(!c.contains(&"CAP_NET_RAW".to_string()) && !c.contains(&"CAP_CHOWN".to_string()));
        assert!(c.contains(&"CAP_NET_ADMIN".to_string()));
        spec.security.drop_capabilities = vec!["ALL".into()];
        spec.security.add_capabilities = vec!["NET_BIND_SERVICE".into()];
        assert_eq!(caps(&config(&spec)), ["CAP_NET_BIND_SERVICE"]);
        spec.security.add_capabilities = vec!["NOT_A_CAPABILITY".into()];
        assert!(matches!(
            runtime_config(&spec),
            Err(SpecError::Capability(c)) if c == "NOT_A_CAPABILITY"
        ));
        spec.security.add_capabilities = vec!["NET_BIND_SERVICE".into()];
        spec.security.allow_privilege_escalation = true;
        spec.security.readonly_rootfs = true;
        let c = config(&spec);
        assert_eq!(c["process"]["noNewPrivileges"], false);
        assert_eq!(c["root"]["readonly"], true);

        let privileged = ContainerSpec {
            security: Security {
                privileged: true,
                ..Default::default()
            },
            ..Default::default()
        };
        let c = config(&privileged);
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
        let c = config(&ContainerSpec {
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

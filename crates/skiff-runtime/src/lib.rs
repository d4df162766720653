//! skiff's container runtime layer, below the node agent: everything needed to run a
//! pod's containers with an OCI runtime binary.
//!
//! - [`spec`]: `config.json` with Kubernetes' security defaults and cgroup limits.
//! - [`oci`]: the `Runtime` trait and `OciRuntime` (runc, or crun) with an explicit `--root`.
//! - [`sandbox`]: a pod's network, IPC and UTS namespaces, pinned by bind mounts.
//! - [`rootfs`]: overlayfs root filesystems over an image's unpacked layers.
//! - [`monitor`]: one detached process per container that owns its pipes, CRI logs and
//!   exit status, so an agent restart loses neither.
//! - [`pod_init`]: the PID 1 that holds a pod's shared PID namespace.
//! - [`cri_log`]: the CRI log format, with size-based rotation.
//! - [`cgroups`]: pod cgroup clean-up and OOM detection, cgroup v1 and v2.
//! - [`procfs`]: processes, their command lines and resource use, and mounts, from `/proc`.

pub mod cgroups;
pub mod console;
pub mod cri_log;
pub mod monitor;
pub mod pod_init;
pub mod procfs;
pub mod rootfs;
pub mod runc;
pub mod sandbox;
pub mod spec;

pub use runc::{ContainerState, OciRuntime, Runtime, RuntimeError};

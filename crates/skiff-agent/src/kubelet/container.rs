//! From a pod's container to a runtime `ContainerSpec`: the command (Kubernetes' rules
//! over the image's entrypoint and cmd), environment (image, then the container's, with
//! `$(VAR)` references), working directory, user, mounts and cgroup limits.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod};
use skiff_oci::ImageConfig;
use skiff_runtime::spec::{
    ContainerSpec, Mount, MountKind, Resources, Seccomp, Security, SharedNamespaces,
};

use super::errors::ContainerError;
use super::pod_dir::PodDir;

/// The command line: `command` replaces the image's entrypoint (and drops its cmd);
/// `args` replaces the image's cmd.
pub fn command_line(
    c: &Container,
    image: &ImageConfig,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let command = c.command.clone().unwrap_or_default();
    let args = c.args.clone().unwrap_or_default();
    let line = if !command.is_empty() {
        command.into_iter().chain(args).collect::<Vec<_>>()
    } else {
        let entrypoint = image.config.entrypoint.clone().unwrap_or_default();
        let rest = if args.is_empty() {
            image.config.cmd.clone().unwrap_or_default()
        } else {
            args
        };
        entrypoint.into_iter().chain(rest).collect()
    };
    line.iter().map(|a| expand(a, env)).collect()
}

/// Kubernetes' `$(VAR)` expansion: defined names are replaced, `$$` is a literal `$`,
/// anything else stays as written.
pub fn expand(s: &str, env: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = env.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// A user spec (`1000`, `1000:1000`, `app`, `app:staff`) as ids, names read from the
/// container's own /etc/passwd and /etc/group.
pub fn resolve_user(user: &str, rootfs: &Path) -> Result<(u32, u32), ContainerError> {
    let (u, g) = user.split_once(':').unwrap_or((user, ""));
    let lookup = |file: &str, name: &str, field: usize| -> Option<(u32, u32)> {
        let text = std::fs::read_to_string(rootfs.join(file)).ok()?;
        text.lines().find_map(|l| {
            let parts: Vec<&str> = l.split(':').collect();
            (parts.first() == Some(&name)).then(|| {
                let id = parts.get(2)?.parse().ok()?;
                let gid = parts.get(field)?.parse().ok()?;
                Some((id, gid))
            })?
        })
    };
    let (uid, mut gid) = match u.parse::<u32>() {
        Ok(uid) => (uid, lookup_gid_of_uid(uid, rootfs).unwrap_or(0)),
        Err(_) if u.is_empty() => (0, 0),
        Err(_) => lookup("etc/passwd", u, 3).ok_or_else(|| ContainerError::NoUser(u.into()))?,
    };
    if !g.is_empty() {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => lookup("etc/group", g, 2)
                .map(|(id, _)| id)
                .ok_or_else(|| ContainerError::NoGroup(g.into()))?,
        };
    }
    Ok((uid, gid))
}

fn lookup_gid_of_uid(uid: u32, rootfs: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(rootfs.join("etc/passwd")).ok()?;
    text.lines().find_map(|l| {
        let parts: Vec<&str> = l.split(':').collect();
        (parts.get(2)?.parse::<u32>().ok()? == uid).then(|| parts.get(3)?.parse().ok())?
    })
}

fn quantity_millis(
    resources: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    key: &str,
) -> Option<i64> {
    resources?
        .get(key)
        .and_then(|q| skiff_apimachinery::quantity::millis(&q.0))
}

fn quantity_bytes(
    resources: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
    key: &str,
) -> Option<i64> {
    resources?
        .get(key)
        .and_then(|q| skiff_apimachinery::quantity::units(&q.0))
}

/// The runtime spec of one run of `c`. `env` is already resolved (image, then container).
#[allow(clippy::too_many_arguments)]
pub fn container_spec(
    pod: &Pod,
    c: &Container,
    image: &ImageConfig,
    dir: &PodDir,
    attempt: u32,
    rootfs: PathBuf,
    env: &BTreeMap<String, String>,
) -> Result<ContainerSpec, ContainerError> {
    let spec = pod.spec.as_ref().ok_or(ContainerError::NoSpec)?;
    let pod_sc = spec.security_context.as_ref();
    let sc = c.security_context.as_ref();
    let image_user = image.config.user.clone().unwrap_or_default();
    let (mut uid, mut gid) = resolve_user(&image_user, &rootfs)?;
    if let Some(u) = sc
        .and_then(|s| s.run_as_user)
        .or(pod_sc.and_then(|s| s.run_as_user))
    {
        uid = u as u32;
        gid = lookup_gid_of_uid(uid, &rootfs).unwrap_or(gid);
    }
    if let Some(g) = sc
        .and_then(|s| s.run_as_group)
        .or(pod_sc.and_then(|s| s.run_as_group))
    {
        gid = g as u32;
    }
    let additional_gids = pod_sc
        .and_then(|s| s.supplemental_groups.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|g| g as u32)
        .collect();
    let mut mounts: Vec<Mount> = ["hosts", "hostname", "resolv.conf"]
        .iter()
        .map(|f| Mount {
            destination: format!("/etc/{f}"),
            source: dir.etc().join(f),
            kind: MountKind::Bind,
            readonly: false,
        })
        .collect();
    // Where the container may leave its termination message (a file of its run's bundle).
    let message_path = c
        .termination_message_path
        .clone()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(Mount {
        destination: message_path,
        source: dir
            .attempt_dir(&c.name, attempt)
            .join(super::pod_dir::TERMINATION_LOG),
        kind: MountKind::Bind,
        readonly: false,
    });
    for vm in c.volume_mounts.iter().flatten() {
        let volume = spec
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == vm.name)
            .ok_or_else(|| ContainerError::UndefinedVolume(vm.name.clone()))?;
        let written = super::volumes::is_written(volume);
        let source = if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else if volume.empty_dir.is_some() || written {
            dir.volume(&volume.name)
        } else {
            return Err(ContainerError::UnsupportedVolume(vm.name.clone()));
        };
        let source = match &vm.sub_path {
            Some(sub) if !sub.is_empty() => {
                if sub.split('/').any(|p| p == "..") || sub.starts_with('/') {
                    return Err(ContainerError::SubPath(sub.clone()));
                }
                source.join(sub)
            }
            _ => source,
        };
        mounts.push(Mount {
            destination: vm.mount_path.clone(),
            source,
            kind: MountKind::Bind,
            // What the node writes is read-only inside, as upstream mounts it.
            readonly: vm.read_only.unwrap_or(false) || written,
        });
    }
    let limits = c.resources.as_ref().and_then(|r| r.limits.as_ref());
    let requests = c.resources.as_ref().and_then(|r| r.requests.as_ref());
    let resources = Resources::from_kubernetes(
        quantity_millis(requests, "cpu"),
        quantity_millis(limits, "cpu"),
        quantity_bytes(limits, "memory"),
        None,
    );
    let caps = sc.and_then(|s| s.capabilities.as_ref());
    let security = Security {
        privileged: sc.and_then(|s| s.privileged).unwrap_or(false),
        add_capabilities: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
        drop_capabilities: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
        // As the kubelet: no_new_privs only when allowPrivilegeEscalation is false.
        allow_privilege_escalation: sc.and_then(|s| s.allow_privilege_escalation) != Some(false),
        readonly_rootfs: sc
            .and_then(|s| s.read_only_root_filesystem)
            .unwrap_or(false),
        seccomp: match sc
            .and_then(|s| s.seccomp_profile.as_ref())
            .or(pod_sc.and_then(|s| s.seccomp_profile.as_ref()))
            .map(|p| p.type_.as_str())
        {
            Some("Unconfined") => Seccomp::Unconfined,
            _ => Seccomp::RuntimeDefault,
        },
    };
    let sandbox = dir.sandbox();
    let working_dir = c
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or(image.config.working_dir.clone().filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".into());
    Ok(ContainerSpec {
        args: command_line(c, image, env),
        env: env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
        cwd: working_dir,
        uid,
        gid,
        additional_gids,
        tty: c.tty.unwrap_or(false),
        rootfs,
        mounts,
        namespaces: SharedNamespaces {
            network: Some(sandbox.net()),
            ipc: Some(sandbox.ipc()),
            uts: Some(sandbox.uts()),
            pid: None,
        },
        cgroups_path: format!("{}/{}-{attempt}", dir.cgroup(), c.name),
        resources,
        security,
        oom_score_adj: None,
    })
}

/// The pod's ephemeral containers as containers (the same fields, less the target).
pub fn ephemeral_containers(pod: &Pod) -> Vec<Container> {
    pod.spec
        .iter()
        .flat_map(|s| s.ephemeral_containers.iter().flatten())
        .filter_map(|e| {
            let mut v = serde_json::to_value(e).ok()?;
            v.as_object_mut()?.remove("targetContainerName");
            serde_json::from_value(v).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let mut i = ImageConfig::default();
        let v = |a: &[&str]| (!a.is_empty()).then(|| a.iter().map(|s| s.to_string()).collect());
        i.config.entrypoint = v(entrypoint);
        i.config.cmd = v(cmd);
        i
    }

    fn container(command: &[&str], args: &[&str]) -> Container {
        let v = |a: &[&str]| (!a.is_empty()).then(|| a.iter().map(|s| s.to_string()).collect());
        Container {
            name: "c".into(),
            command: v(command),
            args: v(args),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_override_entrypoint_and_cmd_as_kubernetes_says() {
        let env = BTreeMap::from([("NAME".to_string(), "skiff".to_string())]);
        let img = image(&["/entry"], &["--default"]);
        assert_eq!(
            command_line(&container(&[], &[]), &img, &env),
            ["/entry", "--default"]
        );
        assert_eq!(
            command_line(&container(&[], &["--x"]), &img, &env),
            ["/entry", "--x"]
        );
        assert_eq!(command_line(&container(&["sh"], &[]), &img, &env), ["sh"]);
        assert_eq!(
            command_line(
                &container(&["echo"], &["hi $(NAME)", "$$(NAME)", "$(OTHER)"]),
                &img,
                &env
            ),
            ["echo", "hi skiff", "$(NAME)", "$(OTHER)"]
        );
    }

    #[test]
    fn users_resolve_by_number_or_from_the_image_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        assert_eq!(resolve_user("", dir.path()).unwrap(), (0, 0));
        assert_eq!(resolve_user("app", dir.path()).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("1000", dir.path()).unwrap(), (1000, 1001));
        assert_eq!(resolve_user("app:staff", dir.path()).unwrap(), (1000, 50));
        assert_eq!(resolve_user("42:43", dir.path()).unwrap(), (42, 43));
        assert!(
            resolve_user("nobody", dir.path())
                .unwrap_err()
                .to_string()
                .contains("unable to find user nobody")
        );
    }
}

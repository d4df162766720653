//! The resource registry: every kind the API serves, with the facts discovery, routing and
//! storage need (group, version, plural, scope, short names, categories, subresources).
//!
//! Short names and categories are upstream's: kubectl has no aliases of its own, so `po`, `svc`,
//! `deploy` and `get all` work only because discovery lists them.

use std::collections::HashMap;
use std::sync::LazyLock;

/// A subresource served under `<resource>/<name>/<subresource>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subresource {
    /// `status`: writes change only `.status`; main-resource writes leave `.status` alone.
    Status,
    /// `scale`: an `autoscaling/v1 Scale` view of `.spec.replicas` and the selector.
    Scale,
    /// `pods/binding`: the scheduler's way to set `.spec.nodeName`.
    Binding,
    /// `namespaces/finalize`: the namespace controller's way to clear `.spec.finalizers` once
    /// a terminating namespace is empty.
    Finalize,
    /// `serviceaccounts/token`: TokenRequest, a signed token for the account.
    Token,
    /// `pods/log`: a container's log, streamed from its node.
    Log,
    /// `pods/exec`: a command in a container, over an upgraded connection to its node.
    Exec,
    /// `pods/attach`: a running container's stdio, over an upgraded connection.
    Attach,
    /// `pods/portforward`: connections into the pod's network namespace.
    PortForward,
    /// `pods/ephemeralcontainers`: the one way to add ephemeral containers to a pod
    /// (`kubectl debug`); writes change only `.spec.ephemeralContainers`.
    EphemeralContainers,
    /// `{pods,services,nodes}/proxy`: HTTP relayed to the pod, a Service's endpoint, or the
    /// node agent; the path after `proxy/` goes with it.
    Proxy,
}

impl Subresource {
    pub fn name(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Finalize => "finalize",
            Subresource::Token => "token",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Attach => "attach",
            Subresource::PortForward => "portforward",
            Subresource::EphemeralContainers => "ephemeralcontainers",
            Subresource::Proxy => "proxy",
        }
    }

    /// Whether the node that runs the pod answers it (the API server relays the stream).
    pub fn is_node_stream(self) -> bool {
        matches!(
            self,
            Subresource::Log | Subresource::Exec | Subresource::Attach | Subresource::PortForward
        )
    }

    pub fn parse(name: &str) -> Option<Subresource> {
        [
            Subresource::Status,
            Subresource::Scale,
            Subresource::Binding,
            Subresource::Finalize,
            Subresource::Token,
            Subresource::Log,
            Subresource::Exec,
            Subresource::Attach,
            Subresource::PortForward,
            Subresource::EphemeralContainers,
            Subresource::Proxy,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// One resource type of one group version.
#[derive(Debug, PartialEq, Eq)]
pub struct ResourceType {
    /// API group; empty for the core group (`/api/v1`).
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// Lower-case plural, the path segment (`deployments`).
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub verbs: &'static [&'static str],
    /// The `group_resource` whose storage this type shares (converting on the way, see
    /// [`crate::conversion`]); empty for its own.
    pub storage: &'static str,
}

/// The verbs of an ordinary stored resource, in upstream's discovery order.
pub const CRUD_VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const CREATE_ONLY: &[&str] = &["create"];

impl ResourceType {
    /// `group/version`, or just `version` for the core group (an object's `apiVersion`).
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `plural.group` (`deployments.apps`), or the plural alone for core: how upstream names a
    /// resource in error messages.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `Kind.group` (`Deployment.apps`), or the kind alone for core: how upstream names a kind
    /// in validation errors.
    pub fn group_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_string()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    pub fn list_kind(&self) -> String {
        format!("{}List", self.kind)
    }

    pub fn has_subresource(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// Whether objects of this type are kept in the datastore (reviews are computed, not
    /// stored).
    pub fn is_stored(&self) -> bool {
        self.verbs.contains(&"get")
    }

    /// The name of the storage this type's objects live in.
    fn storage_resource(&self) -> String {
        if self.storage.is_empty() {
            self.group_resource()
        } else {
            self.storage.to_string()
        }
    }

    /// The prefix under which the datastore keeps every object of this type.
    pub fn storage_prefix(&self) -> String {
        format!("/{}/", self.storage_resource())
    }

    /// The datastore key of one object.
    pub fn storage_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/{}/{ns}/{name}", self.storage_resource()),
            _ => format!("/{}/{name}", self.storage_resource()),
        }
    }

    /// The datastore prefix of one namespace's objects (or all of them).
    pub fn storage_list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(ns) if self.namespaced => format!("/{}/{ns}/", self.storage_resource()),
            _ => self.storage_prefix(),
        }
    }
}

macro_rules! resource {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal,
     namespaced: $ns:literal, short: [$($short:literal),*], categories: [$($cat:literal),*],
     sub: [$($sub:ident),*]) => {
        ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$(Subresource::$sub),*],
            verbs: CRUD_VERBS,
            storage: "",
        }
    };
}

/// Every resource the API serves, grouped by group version in discovery order.
pub static RESOURCES: &[ResourceType] = &[
    resource!("", "v1", "ConfigMap", "configmaps", "configmap",
        namespaced: true, short: ["cm"], categories: [], sub: []),
    resource!("", "v1", "Endpoints", "endpoints", "endpoints",
        namespaced: true, short: ["ep"], categories: [], sub: []),
    resource!("", "v1", "Event", "events", "event",
        namespaced: true, short: ["ev"], categories: [], sub: []),
    resource!("", "v1", "Namespace", "namespaces", "namespace",
        namespaced: false, short: ["ns"], categories: [], sub: [Finalize, Status]),
    resource!("", "v1", "Node", "nodes", "node",
        namespaced: false, short: ["no"], categories: [], sub: [Proxy, Status]),
    resource!("", "v1", "Pod", "pods", "pod",
        namespaced: true, short: ["po"], categories: ["all"],
        sub: [Attach, Binding, EphemeralContainers, Exec, Log, PortForward, Proxy, Status]),
    resource!("", "v1", "Secret", "secrets", "secret",
        namespaced: true, short: [], categories: [], sub: []),
    resource!("", "v1", "ServiceAccount", "serviceaccounts", "serviceaccount",
        namespaced: true, short: ["sa"], categories: [], sub: [Token]),
    resource!("", "v1", "Service", "services", "service",
        namespaced: true, short: ["svc"], categories: ["all"], sub: [Proxy, Status]),
    resource!("apps", "v1", "Deployment", "deployments", "deployment",
        namespaced: true, short: ["deploy"], categories: ["all"], sub: [Scale, Status]),
    resource!("apps", "v1", "ReplicaSet", "replicasets", "replicaset",
        namespaced: true, short: ["rs"], categories: ["all"], sub: [Scale, Status]),
    ResourceType {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        short_names: &[],
        categories: &[],
        subresources: &[],
        verbs: CREATE_ONLY,
        storage: "",
    },
    resource!("coordination.k8s.io", "v1", "Lease", "leases", "lease",
        namespaced: true, short: [], categories: [], sub: []),
    resource!("discovery.k8s.io", "v1", "EndpointSlice", "endpointslices", "endpointslice",
        namespaced: true, short: [], categories: [], sub: []),
    // Stored with core/v1 Events, as upstream: one event, read through either API.
    ResourceType {
        storage: "events",
        ..resource!("events.k8s.io", "v1", "Event", "events", "event",
            namespaced: true, short: ["ev"], categories: [], sub: [])
    },
];

/// The API groups in discovery order, each with its versions (preferred first).
pub fn groups() -> Vec<(&'static str, Vec<&'static str>)> {
    let mut out: Vec<(&'static str, Vec<&'static str>)> = Vec::new();
    for r in RESOURCES {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resource types of one group version, in discovery order.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static ResourceType> + 'a {
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// The resource type at `/<prefix>/<group>/<version>/<plural>`.
pub fn lookup(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    // Every request looks its type up (a scan of the table cost 1 % of a create's CPU).
    type Index = HashMap<(&'static str, &'static str, &'static str), &'static ResourceType>;
    static BY_PATH: LazyLock<Index> = LazyLock::new(|| {
        RESOURCES
            .iter()
            .map(|r| ((r.group, r.version, r.plural), r))
            .collect()
    });
    // The map's keys are covariant: it can be asked with keys that live shorter.
    let index: &HashMap<(&str, &str, &str), &'static ResourceType> = &BY_PATH;
    index.get(&(group, version, plural)).copied()
}

/// The resource type of an object's `apiVersion` and `kind`.
pub fn lookup_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_within_a_group_version() {
        for (i, a) in RESOURCES.iter().enumerate() {
            for b in &RESOURCES[i + 1..] {
                assert!(
                    !(a.group == b.group && a.version == b.version && a.plural == b.plural),
                    "{} twice",
                    a.plural
                );
            }
        }
    }

    #[test]
    fn storage_keys_separate_namespaces_and_groups() {
        let pods = lookup("", "v1", "pods").unwrap();
        assert_eq!(
            pods.storage_key(Some("default"), "web"),
            "/pods/default/web"
        );
        assert_eq!(pods.storage_list_prefix(Some("default")), "/pods/default/");
        assert_eq!(pods.storage_list_prefix(None), "/pods/");
        let deploy = lookup("apps", "v1", "deployments").unwrap();
        assert_eq!(deploy.storage_key(Some("a"), "b"), "/deployments.apps/a/b");
        let core_events = lookup("", "v1", "events").unwrap();
        let new_events = lookup("events.k8s.io", "v1", "events").unwrap();
        // Both event APIs share one storage, as upstream's (converting on the way).
        assert_eq!(core_events.storage_prefix(), new_events.storage_prefix());
        assert_eq!(new_events.storage_key(Some("a"), "e"), "/events/a/e");
        let ns = lookup("", "v1", "namespaces").unwrap();
        assert_eq!(
            ns.storage_key(Some("ignored"), "kube-system"),
            "/namespaces/kube-system"
        );
    }

    #[test]
    fn groups_list_core_first() {
        let groups = groups();
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "apps"));
    }

    #[test]
    fn kinds_resolve_from_api_version() {
        assert_eq!(
            lookup_kind("apps/v1", "Deployment").unwrap().plural,
            "deployments"
        );
        assert_eq!(lookup_kind("v1", "Pod").unwrap().plural, "pods");
        assert!(lookup_kind("apps/v2", "Deployment").is_none());
    }
}

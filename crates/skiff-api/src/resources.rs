//! The facts of a resource type that discovery, routing and storage need (group, version,
//! plural, scope, short names, categories, subresources). The types a server serves are its
//! registry's (`skiff-apiserver`'s `registry`, one module per kind); these are the facts'
//! shape and what follows from them.
//!
//! Short names and categories are upstream's: kubectl has no aliases of its own, so `po`, `svc`,
//! `deploy` and `get all` work only because discovery lists them.

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
    /// `certificatesigningrequests/approval`: writes change only `.status.conditions`
    /// (`kubectl certificate approve|deny`).
    Approval,
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
            Subresource::Approval => "approval",
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
            Subresource::Approval,
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
    /// For a custom resource served in several versions (one storage, upstream's `None`
    /// conversion): the apiVersion its objects are written in. Objects are read back with
    /// their apiVersion set to this type's, whichever version wrote them. Empty for the
    /// built-in types, which are stored as served.
    pub stored_version: &'static str,
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
/// The verbs of a review: created and answered, never stored.
pub const CREATE_ONLY: &[&str] = &["create"];
/// The verbs of a kind computed when read (ComponentStatus), never stored.
pub const READ_ONLY: &[&str] = &["get", "list"];

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

    /// Whether objects of this type are kept in the datastore (reviews and component
    /// statuses are computed, not stored: they cannot be watched).
    pub fn is_stored(&self) -> bool {
        self.verbs.contains(&"watch")
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

/// A built-in resource type with the verbs of a stored resource, as the kinds' modules
/// declare theirs: `resource_type!("apps", "v1", "Deployment", "deployments", "deployment",
/// namespaced: true, short: ["deploy"], categories: ["all"], sub: [Scale, Status])`.
#[macro_export]
macro_rules! resource_type {
    ($group:literal, $version:literal, $kind:literal, $plural:literal, $singular:literal,
     namespaced: $ns:literal, short: [$($short:literal),*], categories: [$($cat:literal),*],
     sub: [$($sub:ident),*]) => {
        $crate::resources::ResourceType {
            group: $group,
            version: $version,
            kind: $kind,
            plural: $plural,
            singular: $singular,
            namespaced: $ns,
            short_names: &[$($short),*],
            categories: &[$($cat),*],
            subresources: &[$($crate::resources::Subresource::$sub),*],
            verbs: $crate::resources::CRUD_VERBS,
            storage: "",
            stored_version: "",
        }
    };
}

/// The API groups of `types` (in discovery order) in their order, each with its versions
/// (preferred first).
pub fn groups<'a>(types: &[&'a ResourceType]) -> Vec<(&'a str, Vec<&'a str>)> {
    let mut out: Vec<(&str, Vec<&str>)> = Vec::new();
    for r in types {
        match out.iter_mut().find(|(g, _)| *g == r.group) {
            Some((_, versions)) if !versions.contains(&r.version) => versions.push(r.version),
            Some(_) => {}
            None => out.push((r.group, vec![r.version])),
        }
    }
    out
}

/// The resource types of one group version among `types`, in their order.
pub fn in_group_version<'a, 'b>(
    types: &'b [&'a ResourceType],
    group: &'b str,
    version: &'b str,
) -> impl Iterator<Item = &'a ResourceType> + 'b
where
    'a: 'b,
{
    types
        .iter()
        .copied()
        .filter(move |r| r.group == group && r.version == version)
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// A few built-in types' facts for this crate's tests (the server's registry holds the
/// served ones, each in its kind's module).
#[cfg(test)]
pub(crate) mod testing {
    use super::ResourceType;

    pub const PODS: ResourceType = crate::resource_type!("", "v1", "Pod", "pods", "pod",
        namespaced: true, short: ["po"], categories: ["all"], sub: [Status]);
    pub const NODES: ResourceType = crate::resource_type!("", "v1", "Node", "nodes", "node",
        namespaced: false, short: ["no"], categories: [], sub: [Status]);
    pub const NAMESPACES: ResourceType = crate::resource_type!("", "v1", "Namespace",
        "namespaces", "namespace", namespaced: false, short: ["ns"], categories: [], sub: []);
    pub const DEPLOYMENTS: ResourceType = crate::resource_type!("apps", "v1", "Deployment",
        "deployments", "deployment", namespaced: true, short: ["deploy"], categories: ["all"],
        sub: [Scale, Status]);
    pub const CORE_EVENTS: ResourceType = crate::resource_type!("", "v1", "Event", "events",
        "event", namespaced: true, short: ["ev"], categories: [], sub: []);
    pub const EVENTS: ResourceType = ResourceType {
        storage: "events",
        ..crate::resource_type!("events.k8s.io", "v1", "Event", "events", "event",
            namespaced: true, short: ["ev"], categories: [], sub: [])
    };
    pub const TYPES: &[&ResourceType] = &[&PODS, &NODES, &NAMESPACES, &DEPLOYMENTS];
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    #[test]
    fn storage_keys_separate_namespaces_and_groups() {
        assert_eq!(
            PODS.storage_key(Some("default"), "web"),
            "/pods/default/web"
        );
        assert_eq!(PODS.storage_list_prefix(Some("default")), "/pods/default/");
        assert_eq!(PODS.storage_list_prefix(None), "/pods/");
        assert_eq!(
            DEPLOYMENTS.storage_key(Some("a"), "b"),
            "/deployments.apps/a/b"
        );
        // A type can share another's storage, as the two event APIs do (converting on the way).
        assert_eq!(CORE_EVENTS.storage_prefix(), EVENTS.storage_prefix());
        assert_eq!(EVENTS.storage_key(Some("a"), "e"), "/events/a/e");
        assert_eq!(
            NAMESPACES.storage_key(Some("ignored"), "kube-system"),
            "/namespaces/kube-system"
        );
    }

    #[test]
    fn groups_keep_the_order_they_are_given() {
        let types = [&PODS, &DEPLOYMENTS, &NAMESPACES, &EVENTS];
        let groups = groups(&types);
        assert_eq!(
            groups,
            [
                ("", vec!["v1"]),
                ("apps", vec!["v1"]),
                ("events.k8s.io", vec!["v1"])
            ]
        );
        let core: Vec<&str> = in_group_version(&types, "", "v1")
            .map(|r| r.plural)
            .collect();
        assert_eq!(core, ["pods", "namespaces"]);
    }
}

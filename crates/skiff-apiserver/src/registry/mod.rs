//! The kinds this server serves: one module per kind, each holding everything about it —
//! its facts (names, scope, subresources), defaults, admission, validation, what it holds
//! beyond its own record (a Service's addresses), field selectors and printer columns —
//! behind one trait, [`Kind`]. The request path looks the kind up once (by the path's
//! group, version and plural) and runs upstream's order on a write:
//!
//! decode → defaults → mutating admission → validation → reservations → store.
//!
//! The registry is data made when the server starts ([`Registry::builtin`]), not a table
//! compiled in: what it serves is what it was given. Adding a kind is the checklist in
//! `docs/ARCHITECTURE.md`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;
use skiff_api::table::Printer;
use skiff_api::validation::NameRule;
use skiff_api::{ApiError, Cause, ResourceType, Subresource};

use crate::allocators::Held;
use crate::state::ApiState;

pub mod admissionregistration;
pub mod apiregistration;
pub mod apps;
pub mod authorization;
pub mod autoscaling;
pub mod batch;
pub mod coordination;
pub mod core;
pub mod discovery;
pub mod events;
pub mod networking;
pub mod node;
pub mod policy;
pub mod rbac;
pub mod scheduling;
pub mod storage;

/// An admission or reservation step, which may read and write through the server's state.
pub type Pending<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// A step with nothing to do.
pub fn ready<'a, T: Send + 'a>(value: T) -> Pending<'a, T> {
    Box::pin(async move { Ok(value) })
}

/// What a write reserved beyond the object's own record: `taken` is given back if the
/// write fails; `freed` (what the new version no longer uses) once it succeeded.
#[derive(Debug, Default)]
pub struct Reservation {
    pub taken: Held,
    pub freed: Held,
}

/// One kind of object, all of its rules in one place. Everything but the facts has a
/// default that does nothing, so a kind states only what is its own.
pub trait Kind: Printer + Send + Sync + 'static {
    /// Its facts: group, version, names, scope, subresources, verbs, storage.
    fn resource(&self) -> &ResourceType;

    /// What its object names must be.
    fn name_rule(&self) -> NameRule {
        NameRule::Subdomain
    }

    /// Whether `metadata.generation` counts its spec changes (clients compare it with
    /// `status.observedGeneration`).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Upstream's `PrepareForCreate`, after the defaults: the status a new object starts
    /// with whatever the create said (the controller's or the node's first view of it), and
    /// what follows from its spec (a pod's QoS class, a Job's generated selector).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Warnings for a client writing this object (`Warning` headers), such as what no
    /// controller acts on yet.
    fn warnings(&self, _obj: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Fills in upstream's defaults (`SetDefaults_*`), on every create and update.
    fn default(&self, _obj: &mut Value) {}

    /// Mutating admission of a new object (upstream's admission plugins for this kind),
    /// after its defaults and before its validation.
    fn admit<'a>(&'a self, _state: &'a ApiState, _obj: &'a mut Value) -> Pending<'a, ()> {
        ready(())
    }

    /// Why the object is invalid — as created (`old` is `None`) or as an update of `old`
    /// through the main resource. Object metadata is checked for every kind besides.
    fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<Cause> {
        Vec::new()
    }

    /// Why an update through `subresource` (one that changes more than status) is invalid.
    fn validate_subresource(
        &self,
        _subresource: Subresource,
        _new: &Value,
        _old: &Value,
    ) -> Vec<Cause> {
        Vec::new()
    }

    /// The fields it can be selected by besides name and namespace.
    fn selectable_fields(&self) -> &'static [&'static str] {
        &[]
    }

    /// The grace period a delete gives the object (`requested`: the delete's own), or
    /// `None` to delete it at once.
    fn graceful_deletion(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Marks the object as being deleted, beyond its deletion timestamp (a namespace's
    /// phase).
    fn deleting(&self, _state: &ApiState, _obj: &mut Value) {}

    /// Reserves what the object holds beyond its own record, for a create (`old` is
    /// `None`) or an update through the main resource; may fill fields of `new` in.
    fn reserve<'a>(
        &'a self,
        _state: &'a ApiState,
        _old: Option<&'a Value>,
        _new: &'a mut Value,
    ) -> Pending<'a, Reservation> {
        ready(Reservation::default())
    }

    /// What a stored object holds beyond its record, to give back when it is deleted.
    fn held_by(&self, _obj: &Value) -> Held {
        Held::default()
    }

    /// For a kind whose objects are not stored (reviews, bindings): what a create of one
    /// does, answering the object sent back.
    fn create_unstored<'a>(
        &'a self,
        _state: &'a ApiState,
        _namespace: Option<&'a str>,
        _obj: Value,
    ) -> Pending<'a, Value> {
        let refused = ApiError::method_not_supported(self.resource(), "POST");
        Box::pin(async move { Err(refused) })
    }

    /// Gives back what a reservation took.
    fn release<'a>(&'a self, _state: &'a ApiState, _held: &'a Held) -> Pending<'a, ()> {
        ready(())
    }
}

/// The Warning of a kind stored but not acted on yet: `Job "pi" is stored, but <what>`.
pub(crate) fn stored_but(obj: &Value, kind: &str, what: &str) -> Vec<String> {
    let name = skiff_api::object::meta_str(obj, "name").unwrap_or_default();
    vec![format!("{kind} {name:?} is stored, but {what}")]
}

/// `obj.<section>.<key> = value` unless already set; creates the section (defaulting).
pub(crate) fn set_default(obj: &mut Value, section: &str, key: &str, value: Value) {
    let Some(map) = obj.as_object_mut() else {
        return;
    };
    let section = map
        .entry(section)
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    if let Some(section) = section.as_object_mut() {
        section.entry(key).or_insert(value);
    }
}

/// `map.<key> = value` unless already set (defaulting).
pub(crate) fn entry_default(map: &mut serde_json::Map<String, Value>, key: &str, value: Value) {
    map.entry(key).or_insert(value);
}

/// The kinds served, in discovery order, found by path or by kind.
pub struct Registry {
    kinds: Vec<Arc<dyn Kind>>,
    /// (group, version, plural) → index into `kinds`. The facts' names are `'static`, so
    /// a request's lookup borrows its path's words and allocates nothing.
    by_path: HashMap<(&'static str, &'static str, &'static str), usize>,
}

impl Registry {
    /// Every built-in kind, grouped by group version in upstream's discovery order.
    pub fn builtin() -> Registry {
        // Groups in the order upstream's discovery lists them; within a group version,
        // resources by name.
        let kinds: Vec<Arc<dyn Kind>> = vec![
            Arc::new(core::binding::Bindings),
            Arc::new(core::configmap::ConfigMaps),
            Arc::new(core::endpoints::EndpointsKind),
            Arc::new(core::event::CoreEvents),
            Arc::new(core::limitrange::LimitRanges),
            Arc::new(core::namespace::Namespaces),
            Arc::new(core::node::Nodes),
            Arc::new(core::persistentvolumeclaim::PersistentVolumeClaims),
            Arc::new(core::persistentvolume::PersistentVolumes),
            Arc::new(core::pod::Pods),
            Arc::new(core::podtemplate::PodTemplates),
            Arc::new(core::replicationcontroller::ReplicationControllers),
            Arc::new(core::resourcequota::ResourceQuotas),
            Arc::new(core::secret::Secrets),
            Arc::new(core::serviceaccount::ServiceAccounts),
            Arc::new(core::service::Services),
            Arc::new(admissionregistration::mutatingwebhookconfiguration::kind()),
            Arc::new(admissionregistration::validatingadmissionpolicy::ValidatingAdmissionPolicies),
            Arc::new(admissionregistration::validatingadmissionpolicybinding::ValidatingAdmissionPolicyBindings),
            Arc::new(admissionregistration::validatingwebhookconfiguration::kind()),
            Arc::new(apiregistration::ApiServices),
            Arc::new(apps::controllerrevision::ControllerRevisions),
            Arc::new(apps::daemonset::DaemonSets),
            Arc::new(apps::deployment::Deployments),
            Arc::new(apps::replicaset::ReplicaSets),
            Arc::new(apps::statefulset::StatefulSets),
            Arc::new(events::Events),
            Arc::new(authorization::SelfSubjectAccessReviews),
            Arc::new(autoscaling::HorizontalPodAutoscalers),
            Arc::new(batch::cronjob::CronJobs),
            Arc::new(batch::job::Jobs),
            Arc::new(networking::ingressclass::IngressClasses),
            Arc::new(networking::ingress::Ingresses),
            Arc::new(networking::networkpolicy::NetworkPolicies),
            Arc::new(policy::PodDisruptionBudgets),
            Arc::new(rbac::clusterrolebinding::kind()),
            Arc::new(rbac::clusterrole::ClusterRoles),
            Arc::new(rbac::rolebinding::kind()),
            Arc::new(rbac::role::Roles),
            Arc::new(storage::csidriver::CsiDrivers),
            Arc::new(storage::csinode::CsiNodes),
            Arc::new(storage::csistoragecapacity::CsiStorageCapacities),
            Arc::new(storage::storageclass::StorageClasses),
            Arc::new(storage::volumeattachment::VolumeAttachments),
            Arc::new(scheduling::PriorityClasses),
            Arc::new(coordination::Leases),
            Arc::new(node::RuntimeClasses),
            Arc::new(discovery::EndpointSlices),
        ];
        Registry::of(kinds)
    }

    fn of(kinds: Vec<Arc<dyn Kind>>) -> Registry {
        let by_path = kinds
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let r = k.resource();
                ((r.group, r.version, r.plural), i)
            })
            .collect();
        Registry { kinds, by_path }
    }

    /// The kind at `/<prefix>/<group>/<version>/<plural>`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<dyn Kind>> {
        // The map's keys are covariant: it can be asked with keys that live shorter.
        let index: &HashMap<(&str, &str, &str), usize> = &self.by_path;
        index
            .get(&(group, version, plural))
            .map(|&i| self.kinds[i].clone())
    }

    /// The kind serving `rt` (one of this registry's).
    pub fn of_type(&self, rt: &ResourceType) -> Option<Arc<dyn Kind>> {
        self.lookup(rt.group, rt.version, rt.plural)
    }

    /// Every kind, in discovery order.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn Kind>> {
        self.kinds.iter()
    }

    /// The facts of every kind, in discovery order (what discovery and OpenAPI list).
    pub fn resources(&self) -> Vec<&ResourceType> {
        self.kinds.iter().map(|k| k.resource()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_within_a_group_version() {
        let registry = Registry::builtin();
        let types = registry.resources();
        assert_eq!(registry.by_path.len(), types.len(), "a plural twice");
        for rt in &types {
            let found = registry.lookup(rt.group, rt.version, rt.plural).unwrap();
            assert_eq!(found.resource().kind, rt.kind);
        }
        assert!(registry.lookup("apps", "v2", "deployments").is_none());
    }

    #[test]
    fn groups_list_core_first() {
        let registry = Registry::builtin();
        let groups = skiff_api::resources::groups(&registry.resources());
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "apps"));
    }

    #[test]
    fn every_served_kind_has_a_schema() {
        use skiff_api::schema::{message_name, schema};
        for rt in Registry::builtin().resources() {
            let name = message_name(&rt.api_version(), rt.kind);
            assert!(schema().message(&name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_column_has_a_cell() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let empty = serde_json::json!({"metadata": {"name": "x"}});
        for kind in Registry::builtin().kinds() {
            assert_eq!(
                kind.columns().len(),
                kind.cells(&empty, now).len(),
                "{}",
                kind.resource().kind
            );
        }
    }
}

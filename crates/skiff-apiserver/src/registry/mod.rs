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

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock, RwLock};

use serde_json::Value;
use skiff_api::table::Printer;
use skiff_api::validation::NameRule;
use skiff_api::{ApiError, Cause, ResourceType, Subresource};

use crate::allocators::Held;
use crate::state::ApiState;

pub mod admissionregistration;
pub mod apiextensions;
pub mod apiregistration;
pub mod apps;
pub mod authentication;
pub mod authorization;
pub mod autoscaling;
pub mod batch;
pub mod certificates;
pub mod coordination;
pub mod core;
pub mod discovery;
pub mod events;
pub mod flowcontrol;
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

    /// Mutating admission of a new object created by `user` (upstream's admission plugins
    /// for this kind), after its defaults and before its validation.
    fn admit<'a>(
        &'a self,
        _state: &'a ApiState,
        _user: &'a crate::authn::UserInfo,
        _obj: &'a mut Value,
    ) -> Pending<'a, ()> {
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
    /// by `user` does, answering the object sent back.
    fn create_unstored<'a>(
        &'a self,
        _state: &'a ApiState,
        _user: &'a crate::authn::UserInfo,
        _namespace: Option<&'a str>,
        _obj: Value,
    ) -> Pending<'a, Value> {
        let refused = ApiError::method_not_supported(self.resource(), "POST");
        Box::pin(async move { Err(refused) })
    }

    /// For a kind whose objects are computed when read (ComponentStatus): every object, as
    /// of now. `None` for stored kinds.
    fn computed<'a>(&'a self, _state: &'a ApiState) -> Option<Pending<'a, Vec<Value>>> {
        None
    }

    /// The OpenAPI v3 schema of its objects when it is not the built-in one the protobuf
    /// schema describes (a custom resource's, from its definition).
    fn openapi_schema(&self) -> Option<Value> {
        None
    }

    /// The types its objects' fields merge and are owned by (server-side apply): the
    /// protobuf schema's for a built-in kind, its structural schema's for a custom one.
    fn field_types(&self) -> skiff_api::field_types::TypeNode<'_> {
        let rt = self.resource();
        skiff_api::field_types::TypeNode::of(&rt.api_version(), rt.kind)
    }

    /// Removes the fields its objects do not have, answering their paths (`fieldValidation`
    /// decides what the client hears of them).
    fn prune_unknown(&self, obj: &mut Value) -> Vec<String> {
        let rt = self.resource();
        skiff_api::schema::prune_unknown_fields(&rt.api_version(), rt.kind, obj)
    }

    /// Where its `scale` subresource finds the replica counts and the selector.
    fn scale_paths(&self) -> ScalePaths {
        ScalePaths::WORKLOAD
    }

    /// A finalizer its objects get when their delete begins, for work that must finish
    /// before they go (a CustomResourceDefinition's objects are deleted first).
    fn deletion_finalizer(&self) -> Option<&'static str> {
        None
    }

    /// For a kind made from a definition at run time: a hash of what it was made from, so
    /// an unchanged definition leaves the served set as it is.
    fn definition_hash(&self) -> Option<u64> {
        None
    }

    /// Gives back what a reservation took.
    fn release<'a>(&'a self, _state: &'a ApiState, _held: &'a Held) -> Pending<'a, ()> {
        ready(())
    }
}

/// Where the `scale` subresource reads and writes a kind's replica counts (property
/// names from the object's root) and how it finds the label selector.
#[derive(Clone, Copy, Debug)]
pub struct ScalePaths {
    pub spec_replicas: &'static [&'static str],
    pub status_replicas: &'static [&'static str],
    pub selector: ScaleSelector,
}

#[derive(Clone, Copy, Debug)]
pub enum ScaleSelector {
    /// A `LabelSelector` object, printed as its string form (the workloads' spec.selector).
    Structured(&'static [&'static str]),
    /// A string already in selector form (a custom resource's `labelSelectorPath`).
    Text(&'static [&'static str]),
    None,
}

impl ScalePaths {
    /// Deployments, ReplicaSets, StatefulSets and ReplicationControllers.
    pub const WORKLOAD: ScalePaths = ScalePaths {
        spec_replicas: &["spec", "replicas"],
        status_replicas: &["status", "replicas"],
        selector: ScaleSelector::Structured(&["spec", "selector"]),
    };
}

/// The Warning of a kind stored but not acted on yet: `Job "pi" is stored, but <what>`.
pub(crate) fn stored_but(obj: &Value, kind: &str, what: &str) -> Vec<String> {
    let name = skiff_api::object::meta_str(obj, "name").unwrap_or_default();
    vec![format!("{kind} {name:?} is stored, but {what}")]
}

/// A review sent back as its kind's answer, with its status filled in.
pub(crate) fn answered(mut review: Value, rt: &ResourceType, status: Value) -> Value {
    review["apiVersion"] = rt.api_version().into();
    review["kind"] = rt.kind.into();
    review["status"] = status;
    review
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

/// The kinds served: the built-in ones, and those the cluster's CustomResourceDefinitions
/// define, which come and go while the server runs. Requests see one consistent
/// [`Served`] set at a time; a definition's change swaps in a new set (requests already
/// running finish with the one they looked up).
pub struct Registry {
    served: RwLock<Arc<Served>>,
}

/// One set of kinds served, in discovery order, found by path or by kind.
pub struct Served {
    kinds: Vec<Arc<dyn Kind>>,
    /// (group, version, plural) → index into `kinds`. The facts' names are `'static`, so
    /// a request's lookup borrows its path's words and allocates nothing.
    by_path: HashMap<(&'static str, &'static str, &'static str), usize>,
    builtin: usize,
    /// The kinds of each CustomResourceDefinition (by its name), served after the built-in
    /// ones.
    custom: BTreeMap<String, Vec<Arc<dyn Kind>>>,
    /// The OpenAPI documents of this set, rendered when first asked for.
    openapi: OnceLock<Arc<crate::openapi_docs::OpenApiDocs>>,
}

impl Registry {
    /// Every built-in kind, grouped by group version in upstream's discovery order.
    pub fn builtin() -> Registry {
        // Groups in the order upstream's discovery lists them; within a group version,
        // resources by name.
        let kinds: Vec<Arc<dyn Kind>> = vec![
            Arc::new(core::binding::Bindings),
            Arc::new(core::componentstatus::ComponentStatuses),
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
            Arc::new(apiextensions::CustomResourceDefinitions),
            Arc::new(apiregistration::ApiServices),
            Arc::new(apps::controllerrevision::ControllerRevisions),
            Arc::new(apps::daemonset::DaemonSets),
            Arc::new(apps::deployment::Deployments),
            Arc::new(apps::replicaset::ReplicaSets),
            Arc::new(apps::statefulset::StatefulSets),
            Arc::new(events::Events),
            Arc::new(authentication::SelfSubjectReviews),
            Arc::new(authentication::TokenReviews),
            Arc::new(authorization::LOCAL_SUBJECT_ACCESS_REVIEWS),
            Arc::new(authorization::SELF_SUBJECT_ACCESS_REVIEWS),
            Arc::new(authorization::SelfSubjectRulesReviews),
            Arc::new(authorization::SUBJECT_ACCESS_REVIEWS),
            // v2 first: a group's first version is its preferred one.
            Arc::new(autoscaling::HorizontalPodAutoscalers),
            Arc::new(autoscaling::HorizontalPodAutoscalersV1),
            Arc::new(batch::cronjob::CronJobs),
            Arc::new(batch::job::Jobs),
            Arc::new(certificates::CertificateSigningRequests),
            Arc::new(networking::ingressclass::IngressClasses),
            Arc::new(networking::ingress::Ingresses),
            Arc::new(networking::ipaddress::IpAddresses),
            Arc::new(networking::networkpolicy::NetworkPolicies),
            Arc::new(networking::servicecidr::ServiceCidrs),
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
            Arc::new(flowcontrol::FlowSchemas),
            Arc::new(flowcontrol::PriorityLevelConfigurations),
        ];
        Registry {
            served: RwLock::new(Arc::new(Served::of(kinds, BTreeMap::new()))),
        }
    }

    /// The kinds served now.
    pub fn served(&self) -> Arc<Served> {
        self.served.read().expect("registry lock").clone()
    }

    /// The kind at `/<prefix>/<group>/<version>/<plural>`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<dyn Kind>> {
        self.served
            .read()
            .expect("registry lock")
            .lookup(group, version, plural)
    }

    /// The kind serving `rt` now.
    pub fn of_type(&self, rt: &ResourceType) -> Option<Arc<dyn Kind>> {
        self.lookup(rt.group, rt.version, rt.plural)
    }

    /// Serves `kinds` for the CustomResourceDefinition `definition` (none: stops serving
    /// it), in place of what it served before. Answers whether anything changed.
    pub fn define(&self, definition: &str, kinds: Vec<Arc<dyn Kind>>) -> bool {
        let mut served = self.served.write().expect("registry lock");
        let hashes: Option<Vec<u64>> = kinds.iter().map(|k| k.definition_hash()).collect();
        if hashes.is_some_and(|h| served.serves(definition, &h)) {
            return false;
        }
        let mut custom = served.custom.clone();
        if kinds.is_empty() {
            custom.remove(definition);
        } else {
            custom.insert(definition.to_string(), kinds);
        }
        let builtin = served.kinds[..served.builtin].to_vec();
        *served = Arc::new(Served::of(builtin, custom));
        true
    }
}

impl Served {
    fn of(builtin: Vec<Arc<dyn Kind>>, custom: BTreeMap<String, Vec<Arc<dyn Kind>>>) -> Served {
        let count = builtin.len();
        let mut kinds = builtin;
        kinds.extend(custom.values().flatten().cloned());
        let mut by_path = HashMap::with_capacity(kinds.len());
        for (i, k) in kinds.iter().enumerate() {
            let r = k.resource();
            // A definition cannot take a built-in path (its names were accepted against
            // them); the first kind at a path keeps it.
            by_path.entry((r.group, r.version, r.plural)).or_insert(i);
        }
        Served {
            kinds,
            by_path,
            builtin: count,
            custom,
            openapi: OnceLock::new(),
        }
    }

    /// The kind at `/<prefix>/<group>/<version>/<plural>`.
    pub fn lookup(&self, group: &str, version: &str, plural: &str) -> Option<Arc<dyn Kind>> {
        // The map's keys are covariant: it can be asked with keys that live shorter.
        let index: &HashMap<(&str, &str, &str), usize> = &self.by_path;
        index
            .get(&(group, version, plural))
            .map(|&i| self.kinds[i].clone())
    }

    /// Every kind, in discovery order.
    pub fn kinds(&self) -> impl Iterator<Item = &Arc<dyn Kind>> {
        self.kinds.iter()
    }

    /// The facts of every kind, in discovery order (what discovery and OpenAPI list).
    pub fn resources(&self) -> Vec<&ResourceType> {
        self.kinds.iter().map(|k| k.resource()).collect()
    }

    /// Whether the definition's kinds served now are the ones with these hashes (none:
    /// it is not served).
    pub fn serves(&self, definition: &str, hashes: &[u64]) -> bool {
        let served = self.defined_by(definition);
        served.len() == hashes.len()
            && served
                .iter()
                .zip(hashes)
                .all(|(k, h)| k.definition_hash() == Some(*h))
    }

    /// The names of the CustomResourceDefinitions served.
    pub fn definitions(&self) -> impl Iterator<Item = &str> {
        self.custom.keys().map(String::as_str)
    }

    /// The kinds a CustomResourceDefinition defines, as served now.
    pub fn defined_by(&self, definition: &str) -> &[Arc<dyn Kind>] {
        self.custom.get(definition).map_or(&[], Vec::as_slice)
    }

    /// This set's OpenAPI documents (rendered on first use: a few tens of milliseconds).
    pub fn openapi(&self) -> Arc<crate::openapi_docs::OpenApiDocs> {
        self.openapi
            .get_or_init(|| Arc::new(crate::openapi_docs::OpenApiDocs::build(&self.kinds)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_are_unique_within_a_group_version() {
        let registry = Registry::builtin();
        let served = registry.served();
        let types = served.resources();
        assert_eq!(served.by_path.len(), types.len(), "a plural twice");
        for rt in &types {
            let found = registry.lookup(rt.group, rt.version, rt.plural).unwrap();
            assert_eq!(found.resource().kind, rt.kind);
        }
        assert!(registry.lookup("apps", "v2", "deployments").is_none());
    }

    #[test]
    fn groups_list_core_first() {
        let served = Registry::builtin().served();
        let groups = skiff_api::resources::groups(&served.resources());
        assert_eq!(groups[0], ("", vec!["v1"]));
        assert!(groups.iter().any(|(g, _)| *g == "apps"));
    }

    #[test]
    fn every_served_kind_has_a_schema() {
        use skiff_api::schema::{message_name, schema};
        for rt in Registry::builtin().served().resources() {
            let name = message_name(&rt.api_version(), rt.kind);
            assert!(schema().message(&name).is_some(), "{name}");
        }
    }

    #[test]
    fn every_column_has_a_cell() {
        let now = time::OffsetDateTime::UNIX_EPOCH;
        let empty = serde_json::json!({"metadata": {"name": "x"}});
        for kind in Registry::builtin().served().kinds() {
            assert_eq!(
                kind.columns().len(),
                kind.cells(&empty, now).len(),
                "{}",
                kind.resource().kind
            );
        }
    }
}

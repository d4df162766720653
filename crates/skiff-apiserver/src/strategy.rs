//! What a create or an update does to an object before it is stored (upstream's REST
//! strategies): system metadata, status/spec separation, generation, defaults, validation.

use serde_json::{Map, Value, json};
use skiff_api::object::{field, meta_str, metadata_mut, now_rfc3339, set_field};
use skiff_api::selectors::Selector;
use skiff_api::{ApiError, Cause, ResourceType, Subresource, defaults, validation};

/// Kinds whose `metadata.generation` counts spec changes (clients compare it with
/// `status.observedGeneration`).
fn tracks_generation(rt: &ResourceType) -> bool {
    matches!(
        (rt.group, rt.kind),
        ("apps", "Deployment") | ("apps", "ReplicaSet")
    )
}

/// Kinds whose status a create may not set: it starts as the controller or kubelet would
/// first see it.
fn initial_status(rt: &ResourceType) -> Option<Value> {
    match (rt.group, rt.kind) {
        ("apps", _) => Some(json!({})),
        ("", "Pod") => Some(json!({"phase": "Pending"})),
        ("", "Service") => Some(json!({"loadBalancer": {}})),
        _ => None,
    }
}

/// A uuid v4 for `metadata.uid`.
pub fn new_uid() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Upstream's `generateName` suffix: five characters from an alphabet without vowels or
/// look-alikes.
pub(crate) fn name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut b = [0u8; 5];
    getrandom::fill(&mut b).expect("the OS random source is available");
    b.iter()
        .map(|x| ALPHABET[*x as usize % ALPHABET.len()] as char)
        .collect()
}

/// Sets `kind`/`apiVersion`, refusing a body of another type.
fn check_type(rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON or YAML object",
        ));
    }
    let api_version = rt.api_version();
    if let Some(v) = obj.get("apiVersion").and_then(Value::as_str)
        && !v.is_empty()
        && v != api_version
    {
        return Err(ApiError::bad_request(format!(
            "the API version in the data ({v}) does not match the expected API version ({api_version})"
        )));
    }
    if let Some(k) = obj.get("kind").and_then(Value::as_str)
        && !k.is_empty()
        && k != rt.kind
    {
        return Err(ApiError::bad_request(format!(
            "the kind in the data ({k}) does not match the expected kind ({})",
            rt.kind
        )));
    }
    obj["apiVersion"] = api_version.into();
    obj["kind"] = rt.kind.into();
    Ok(())
}

/// Puts the request's namespace on the object, refusing a body that names another.
fn check_namespace(
    rt: &ResourceType,
    obj: &mut Value,
    path_ns: Option<&str>,
) -> Result<(), ApiError> {
    let meta = metadata_mut(obj);
    if !rt.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    let body_ns = meta
        .get("namespace")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty());
    match (path_ns, body_ns) {
        (Some(p), Some(b)) if p != b => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        (Some(p), _) => {
            meta.insert("namespace".into(), p.into());
            Ok(())
        }
        (None, _) => Err(ApiError::bad_request(format!(
            "{} is namespaced: create it under /namespaces/<namespace>/",
            rt.plural
        ))),
    }
}

/// Prepares a new object: type, namespace, name (from `generateName`), uid, creation time,
/// generation, initial status, defaults; then validates it.
pub fn prepare_create(
    rt: &ResourceType,
    obj: &mut Value,
    path_ns: Option<&str>,
) -> Result<(), ApiError> {
    check_type(rt, obj)?;
    check_namespace(rt, obj, path_ns)?;
    let meta = metadata_mut(obj);
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name
        && let Some(prefix) = meta
            .get("generateName")
            .and_then(Value::as_str)
            .filter(|p| !p.is_empty())
    {
        let name = format!("{prefix}{}", name_suffix());
        meta.insert("name".into(), name.into());
    }
    meta.insert("uid".into(), new_uid().into());
    meta.insert("creationTimestamp".into(), now_rfc3339().into());
    for system in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(system);
    }
    if tracks_generation(rt) {
        meta.insert("generation".into(), 1.into());
    } else {
        meta.remove("generation");
    }
    if let Some(status) = initial_status(rt) {
        obj["status"] = status;
    }
    defaults::apply(rt, obj);
    if rt.group.is_empty() && rt.kind == "Pod" {
        let class = defaults::qos_class(&obj["spec"]);
        obj["status"]["qosClass"] = class.into();
    }
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let causes = validate(rt, obj, None);
    if !causes.is_empty() {
        return Err(ApiError::invalid(rt, &name, causes));
    }
    Ok(())
}

/// Prepares an update of `old` to `new` through the main resource or a subresource: system
/// fields come from `old`, the main resource cannot change status and the status
/// subresource can change nothing else, generation counts spec changes.
pub fn prepare_update(
    rt: &ResourceType,
    new: &mut Value,
    old: &Value,
    subresource: Option<Subresource>,
) -> Result<(), ApiError> {
    check_type(rt, new)?;
    let name = meta_str(old, "name").unwrap_or_default().to_string();
    if let Some(n) = meta_str(new, "name").filter(|n| !n.is_empty())
        && n != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({n}) does not match the name on the URL ({name})"
        )));
    }
    if rt.namespaced
        && let Some(n) = meta_str(new, "namespace").filter(|n| !n.is_empty())
        && Some(n) != meta_str(old, "namespace")
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if subresource == Some(Subresource::Status) {
        // Status writes keep everything but status (upstream's ResetObjectMetaForStatus).
        let status = new.get("status").cloned();
        *new = old.clone();
        match status {
            Some(s) => new["status"] = s,
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
        return Ok(());
    }
    if subresource == Some(Subresource::EphemeralContainers) {
        // Only spec.ephemeralContainers changes, and only by additions.
        let ephemeral = field(new, &["spec", "ephemeralContainers"]).cloned();
        *new = old.clone();
        match ephemeral {
            Some(e) => new["spec"]["ephemeralContainers"] = e,
            None => {
                new["spec"]
                    .as_object_mut()
                    .map(|m| m.remove("ephemeralContainers"));
            }
        }
        let mut causes = Vec::new();
        validate_ephemeral_containers(new, old, &mut causes);
        if !causes.is_empty() {
            return Err(ApiError::invalid(rt, &name, causes));
        }
        return Ok(());
    }
    if subresource == Some(Subresource::Finalize) {
        // Finalize writes change only a namespace's spec.finalizers.
        let finalizers = field(new, &["spec", "finalizers"]).cloned();
        *new = old.clone();
        match finalizers {
            Some(f) => new["spec"]["finalizers"] = f,
            None => {
                new["spec"].as_object_mut().map(|m| m.remove("finalizers"));
            }
        }
        return Ok(());
    }
    let old_meta = old
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let meta = metadata_mut(new);
    for system in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old_meta.get(system) {
            Some(v) => meta.insert(system.into(), v.clone()),
            None => meta.remove(system),
        };
    }
    meta.remove("selfLink");
    if rt.has_subresource(Subresource::Status) {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                new.as_object_mut().map(|m| m.remove("status"));
            }
        }
    }
    if rt.has_subresource(Subresource::EphemeralContainers) {
        // Only the ephemeralcontainers subresource changes a pod's ephemeral containers.
        match field(old, &["spec", "ephemeralContainers"]) {
            Some(e) => set_field(new, &["spec", "ephemeralContainers"], e.clone()),
            None => {
                if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                    spec.remove("ephemeralContainers");
                }
            }
        }
    }
    if rt.has_subresource(Subresource::Finalize) {
        // Only the finalize subresource changes a namespace's finalizers.
        let finalizers = field(old, &["spec", "finalizers"])
            .cloned()
            .unwrap_or(json!([]));
        set_field(new, &["spec", "finalizers"], finalizers);
    }
    defaults::apply(rt, new);
    if tracks_generation(rt) && spec_of(new) != spec_of(old) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        metadata_mut(new).insert("generation".into(), generation.into());
    }
    let causes = validate(rt, new, Some(old));
    if !causes.is_empty() {
        return Err(ApiError::invalid(rt, &name, causes));
    }
    Ok(())
}

/// Everything but metadata and status: what a generation counts.
fn spec_of(obj: &Value) -> Map<String, Value> {
    let mut m = obj.as_object().cloned().unwrap_or_default();
    for k in ["metadata", "status", "kind", "apiVersion"] {
        m.remove(k);
    }
    m
}

fn validate(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
    let mut causes = if old.is_none() {
        validation::validate_object_meta(rt, obj)
    } else {
        Vec::new()
    };
    causes.extend(validation::validate_labels_and_annotations(obj));
    match (rt.group, rt.kind) {
        ("apps", "Deployment" | "ReplicaSet") => validate_workload(obj, old, &mut causes),
        ("", "Pod") => {
            validate_pod_spec(field(obj, &["spec"]), "spec", &mut causes);
            if let Some(old) = old {
                validate_pod_update(obj, old, &mut causes);
            }
        }
        ("", "Service") => validate_service(obj, &mut causes),
        ("", "Node") => {
            if let Some(old) = old {
                validate_node_update(obj, old, &mut causes);
            }
        }
        _ => {}
    }
    causes
}

/// A node's pod CIDRs are set once (by the node IPAM, or by the node at registration) and
/// never changed: its pods hold addresses from them. Upstream's rule and message.
fn validate_node_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let was = field(old, &["spec", "podCIDRs"])
        .and_then(Value::as_array)
        .filter(|c| !c.is_empty());
    if let Some(was) = was
        && field(new, &["spec", "podCIDRs"]).and_then(Value::as_array) != Some(was)
    {
        causes.push(Cause::forbidden(
            "spec.podCIDRs",
            "node updates may not change podCIDR except from \"\" to valid",
        ));
    }
}

fn validate_workload(obj: &Value, old: Option<&Value>, causes: &mut Vec<Cause>) {
    if let Some(r) = field(obj, &["spec", "replicas"]).and_then(Value::as_i64)
        && r < 0
    {
        causes.push(Cause::invalid(
            "spec.replicas",
            &r.into(),
            "must be greater than or equal to 0",
        ));
    }
    let selector = field(obj, &["spec", "selector"]);
    let empty = selector.is_none_or(|s| {
        s.get("matchLabels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty)
            && s.get("matchExpressions")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
    });
    if empty {
        causes.push(Cause::required("spec.selector"));
    } else if let Some(sel) = selector {
        match Selector::from_label_selector(sel) {
            Ok(s) => {
                let labels = field(obj, &["spec", "template", "metadata", "labels"]);
                if !s.matches_labels(labels) {
                    causes.push(Cause::invalid(
                        "spec.template.metadata.labels",
                        labels.unwrap_or(&Value::Null),
                        "`selector` does not match template `labels`",
                    ));
                }
            }
            Err(e) => causes.push(Cause::invalid("spec.selector", sel, &e.to_string())),
        }
        if let Some(old) = old
            && field(old, &["spec", "selector"]) != Some(sel)
        {
            causes.push(Cause::invalid("spec.selector", sel, "field is immutable"));
        }
    }
    causes.extend(validation::validate_labels(
        field(obj, &["spec", "template", "metadata", "labels"]),
        "spec.template.metadata.labels",
    ));
    validate_pod_spec(
        field(obj, &["spec", "template", "spec"]),
        "spec.template.spec",
        causes,
    );
}

/// A container's name (a DNS label, none the `seen` names, which it joins) and image
/// (required), as every kind of container in a pod is checked.
fn validate_container_name_and_image(
    c: &Value,
    at: &str,
    seen: &mut Vec<String>,
    causes: &mut Vec<Cause>,
) {
    match c.get("name").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required(format!("{at}.name"))),
        Some(n) => {
            for e in validation::dns1123_label_errors(n) {
                causes.push(Cause::invalid(format!("{at}.name"), &n.into(), &e));
            }
            if seen.iter().any(|s| s == n) {
                causes.push(Cause {
                    reason: "FieldValueDuplicate",
                    message: format!("{at}.name: Duplicate value: {n:?}"),
                    field: format!("{at}.name"),
                });
            }
            seen.push(n.to_string());
        }
    }
    if c.get("image")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty)
    {
        causes.push(Cause::required(format!("{at}.image")));
    }
}

fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
    let containers = spec
        .and_then(|s| s.get("containers"))
        .and_then(Value::as_array);
    let Some(containers) = containers.filter(|c| !c.is_empty()) else {
        causes.push(Cause::required(format!("{path}.containers")));
        return;
    };
    let mut seen = Vec::new();
    for (i, c) in containers.iter().enumerate() {
        validate_container_name_and_image(c, &format!("{path}.containers[{i}]"), &mut seen, causes);
    }
    if let Some(policy) = spec.and_then(|s| s.get("restartPolicy")) {
        let allowed = ["Always", "OnFailure", "Never"];
        if !policy.as_str().is_some_and(|p| allowed.contains(&p)) {
            causes.push(Cause::not_supported(
                format!("{path}.restartPolicy"),
                policy,
                &allowed,
            ));
        }
    }
}

/// Upstream's rule for pod updates: the spec stays as created but for the containers'
/// images, an active deadline set or shortened, tolerations added, scheduling gates
/// removed, and a negative grace period set to 1.
fn validate_pod_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let (Some(new_spec), Some(old_spec)) = (field(new, &["spec"]), field(old, &["spec"])) else {
        return;
    };
    if !new_spec.is_object() {
        // Not a spec at all: the spec's own validation says so.
        return;
    }
    let mut rest = new_spec.clone();
    for list in ["containers", "initContainers"] {
        let count = |spec: &Value| spec.get(list).and_then(Value::as_array).map_or(0, Vec::len);
        if count(new_spec) != count(old_spec) {
            causes.push(Cause::forbidden(
                format!("spec.{list}"),
                "pod updates may not add or remove containers",
            ));
            return;
        }
        for (i, c) in rest
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let old_image = old_spec
                .pointer(&format!("/{list}/{i}/image"))
                .cloned()
                .unwrap_or(Value::Null);
            if let Some(c) = c.as_object_mut() {
                c.insert("image".into(), old_image);
            }
        }
    }
    let number = |spec: &Value, k: &str| spec.get(k).and_then(Value::as_i64);
    let deadline_allowed = match (
        number(old_spec, "activeDeadlineSeconds"),
        number(new_spec, "activeDeadlineSeconds"),
    ) {
        (None, _) => true,
        (Some(old), Some(new)) => 0 < new && new <= old,
        (Some(_), None) => false,
    };
    let grace_allowed = number(old_spec, "terminationGracePeriodSeconds").is_some_and(|g| g < 0)
        && number(new_spec, "terminationGracePeriodSeconds") == Some(1);
    let list = |spec: &Value, k: &str| {
        spec.get(k)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (old_tolerations, new_tolerations) =
        (list(old_spec, "tolerations"), list(new_spec, "tolerations"));
    let tolerations_added = old_tolerations.iter().all(|t| new_tolerations.contains(t));
    let (old_gates, new_gates) = (
        list(old_spec, "schedulingGates"),
        list(new_spec, "schedulingGates"),
    );
    let gates_removed = new_gates.iter().all(|g| old_gates.contains(g));
    let Some(rest_map) = rest.as_object_mut() else {
        return;
    };
    for (key, allowed) in [
        ("activeDeadlineSeconds", deadline_allowed),
        ("terminationGracePeriodSeconds", grace_allowed),
        ("tolerations", tolerations_added),
        ("schedulingGates", gates_removed),
    ] {
        if allowed {
            match old_spec.get(key) {
                Some(v) => rest_map.insert(key.into(), v.clone()),
                None => rest_map.remove(key),
            };
        }
    }
    if rest != *old_spec {
        causes.push(Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,\
             `spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` \
             (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` \
             (allow it to be set to 1 if it was previously negative)",
        ));
    }
}

/// Upstream's rules for ephemeral containers: they are only added (those there stay as
/// they are), each with a name no other container of the pod has and an image, without
/// what only long-lived containers have (ports, probes, lifecycle, resources), and a
/// `targetContainerName` that names one of the pod's containers.
fn validate_ephemeral_containers(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
    let list = |obj: &Value, k: &str| {
        field(obj, &["spec", k])
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let (before, after) = (
        list(old, "ephemeralContainers"),
        list(new, "ephemeralContainers"),
    );
    let name_of = |c: &Value| {
        c.get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    for was in &before {
        match after.iter().find(|c| name_of(c) == name_of(was)) {
            None => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                &format!(
                    "existing ephemeral containers {:?} may not be removed",
                    name_of(was)
                ),
            )),
            Some(now) if now != was => causes.push(Cause::forbidden(
                "spec.ephemeralContainers",
                &format!(
                    "existing ephemeral containers {:?} may not be changed",
                    name_of(was)
                ),
            )),
            Some(_) => {}
        }
    }
    let regular: Vec<String> = list(new, "containers")
        .iter()
        .chain(list(new, "initContainers").iter())
        .map(name_of)
        .collect();
    let mut seen: Vec<String> = regular.clone();
    for (i, c) in after.iter().enumerate() {
        let at = format!("spec.ephemeralContainers[{i}]");
        validate_container_name_and_image(c, &at, &mut seen, causes);
        for only_regular in [
            "ports",
            "livenessProbe",
            "readinessProbe",
            "startupProbe",
            "lifecycle",
            "resources",
        ] {
            let set = c.get(only_regular).is_some_and(|v| match v {
                Value::Null => false,
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                _ => true,
            });
            if set {
                causes.push(Cause::forbidden(
                    format!("{at}.{only_regular}"),
                    "cannot be set for an Ephemeral Container",
                ));
            }
        }
        if let Some(target) = c
            .get("targetContainerName")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            && !regular.iter().any(|r| r == target)
        {
            causes.push(Cause {
                reason: "FieldValueNotFound",
                message: format!("{at}.targetContainerName: Not found: {target:?}"),
                field: format!("{at}.targetContainerName"),
            });
        }
    }
}

fn validate_service(obj: &Value, causes: &mut Vec<Cause>) {
    let types = ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"];
    let ty = field(obj, &["spec", "type"])
        .cloned()
        .unwrap_or(json!("ClusterIP"));
    if !ty.as_str().is_some_and(|t| types.contains(&t)) {
        causes.push(Cause::not_supported("spec.type", &ty, &types));
    }
    let ports = field(obj, &["spec", "ports"]).and_then(Value::as_array);
    if ty != "ExternalName" && ports.is_none_or(Vec::is_empty) {
        causes.push(Cause::required("spec.ports"));
    }
    for (i, p) in ports.into_iter().flatten().enumerate() {
        let port = p.get("port").and_then(Value::as_i64).unwrap_or(0);
        if !(1..=65535).contains(&port) {
            causes.push(Cause::invalid(
                format!("spec.ports[{i}].port"),
                &port.into(),
                "must be between 1 and 65535, inclusive",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::lookup;

    fn deployment() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}})
    }

    #[test]
    fn create_fills_system_fields_and_defaults() {
        let rt = lookup("apps", "v1", "deployments").unwrap();
        let mut d = deployment();
        d["status"] = json!({"replicas": 9});
        prepare_create(rt, &mut d, Some("default")).unwrap();
        assert_eq!(d["metadata"]["namespace"], "default");
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert_eq!(d["status"], json!({}));
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["spec"]["replicas"], 1);
    }

    #[test]
    fn generate_name_and_namespace_mismatch() {
        let rt = lookup("", "v1", "configmaps").unwrap();
        let mut cm = json!({"metadata": {"generateName": "cfg-"}});
        prepare_create(rt, &mut cm, Some("a")).unwrap();
        let name = cm["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
        let mut cm = json!({"metadata": {"name": "x", "namespace": "b"}});
        assert_eq!(
            prepare_create(rt, &mut cm, Some("a")).unwrap_err().code,
            400
        );
    }

    #[test]
    fn pod_updates_change_only_what_upstream_lets_them() {
        let rt = lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "web:v1", "command": ["serve"]}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "activeDeadlineSeconds": 100,
        }});
        prepare_create(rt, &mut pod, Some("default")).unwrap();
        let update = |change: &dyn Fn(&mut Value)| {
            let mut new = pod.clone();
            change(&mut new);
            prepare_update(rt, &mut new, &pod, None)
        };
        update(&|p| p["spec"]["containers"][0]["image"] = json!("web:v2")).unwrap();
        update(&|p| p["spec"]["activeDeadlineSeconds"] = json!(50)).unwrap();
        update(&|p| {
            p["spec"]["tolerations"]
                .as_array_mut()
                .unwrap()
                .push(json!({"key": "b", "operator": "Exists"}))
        })
        .unwrap();
        update(&|p| p["metadata"]["labels"] = json!({"app": "web"})).unwrap();
        for forbidden in [
            &(|p: &mut Value| p["spec"]["containers"][0]["command"] = json!(["other"]))
                as &dyn Fn(&mut Value),
            &|p| p["spec"]["activeDeadlineSeconds"] = json!(200),
            &|p| p["spec"]["tolerations"] = json!([]),
            &|p| p["spec"]["serviceAccountName"] = json!("robot"),
        ] {
            let e = update(forbidden).unwrap_err();
            assert_eq!(e.code, 422);
            assert!(
                e.message
                    .contains("spec: Forbidden: pod updates may not change fields other than"),
                "{}",
                e.message
            );
        }
        // Malformed specs are refused, not a panic.
        for malformed in [
            json!(5),
            json!({"containers": [5]}),
            json!({"containers": "x"}),
        ] {
            let e = update(&|p| p["spec"] = malformed.clone()).unwrap_err();
            assert_eq!(e.code, 422, "{}", e.message);
        }
        let e = update(&|p| {
            p["spec"]["containers"]
                .as_array_mut()
                .unwrap()
                .push(json!({"name": "d", "image": "x"}))
        })
        .unwrap_err();
        assert!(
            e.message.contains(
                "spec.containers: Forbidden: pod updates may not add or remove containers"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn ephemeral_containers_are_only_added_through_their_subresource() {
        let rt = lookup("", "v1", "pods").unwrap();
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "web:v1"}]}});
        prepare_create(rt, &mut pod, Some("default")).unwrap();
        let debugger = json!({"name": "debugger", "image": "busybox", "targetContainerName": "c"});
        let sub = Some(Subresource::EphemeralContainers);
        let mut added = pod.clone();
        added["spec"]["ephemeralContainers"] = json!([debugger]);
        added["metadata"]["labels"] = json!({"ignored": "yes"});
        prepare_update(rt, &mut added, &pod, sub).unwrap();
        assert_eq!(added["spec"]["ephemeralContainers"], json!([debugger]));
        assert!(
            added["metadata"].get("labels").is_none(),
            "only ephemeral containers change"
        );
        // Through the main resource they stay as they were.
        let mut main = added.clone();
        main["spec"]["ephemeralContainers"] = json!([]);
        prepare_update(rt, &mut main, &added, None).unwrap();
        assert_eq!(main["spec"]["ephemeralContainers"], json!([debugger]));
        let refused = |ephemeral: Value| {
            let mut new = added.clone();
            new["spec"]["ephemeralContainers"] = ephemeral;
            prepare_update(rt, &mut new, &added, sub)
                .unwrap_err()
                .message
        };
        assert!(
            refused(json!([]))
                .contains("existing ephemeral containers \"debugger\" may not be removed")
        );
        let second = |extra: Value| json!([debugger, extra]);
        assert!(
            refused(second(json!({"name": "c", "image": "x"}))).contains("Duplicate value: \"c\"")
        );
        assert!(
            refused(second(json!({"name": "d", "image": "x", "ports": [{"containerPort": 80}]})))
                .contains("spec.ephemeralContainers[1].ports: Forbidden: cannot be set for an Ephemeral Container")
        );
        assert!(
            refused(second(
                json!({"name": "d", "image": "x", "targetContainerName": "nope"})
            ))
            .contains("targetContainerName: Not found: \"nope\"")
        );
    }

    #[test]
    fn invalid_deployments_list_their_causes() {
        let rt = lookup("apps", "v1", "deployments").unwrap();
        let mut d = json!({"metadata": {"name": "Web"}, "spec": {"replicas": -1, "template": {"spec": {}}}});
        let e = prepare_create(rt, &mut d, Some("default")).unwrap_err();
        assert_eq!(e.code, 422);
        let fields: Vec<String> = e
            .details
            .unwrap()
            .causes
            .iter()
            .map(|c| c.field.clone())
            .collect();
        assert!(fields.contains(&"metadata.name".to_string()), "{fields:?}");
        assert!(fields.contains(&"spec.replicas".to_string()));
        assert!(fields.contains(&"spec.selector".to_string()));
        assert!(fields.contains(&"spec.template.spec.containers".to_string()));
    }

    #[test]
    fn updates_bump_generation_on_spec_changes_only_and_keep_status() {
        let rt = lookup("apps", "v1", "deployments").unwrap();
        let mut old = deployment();
        prepare_create(rt, &mut old, Some("default")).unwrap();
        old["status"] = json!({"replicas": 1});

        let mut same = old.clone();
        same["metadata"]["labels"] = json!({"x": "y"});
        same["status"] = json!({"replicas": 5});
        prepare_update(rt, &mut same, &old, None).unwrap();
        assert_eq!(same["metadata"]["generation"], 1);
        assert_eq!(same["status"]["replicas"], 1);

        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(4);
        prepare_update(rt, &mut scaled, &old, None).unwrap();
        assert_eq!(scaled["metadata"]["generation"], 2);

        let mut status = old.clone();
        status["spec"]["replicas"] = json!(9);
        status["status"] = json!({"replicas": 3});
        prepare_update(rt, &mut status, &old, Some(Subresource::Status)).unwrap();
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 3);

        let mut moved = old.clone();
        moved["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        moved["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let e = prepare_update(rt, &mut moved, &old, None).unwrap_err();
        assert!(e.message.contains("field is immutable"), "{}", e.message);
    }
}

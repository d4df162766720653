//! What a create or an update does to an object before it is stored (upstream's REST
//! strategies), the same for every kind, calling on the kind (`registry`) for its own
//! rules: system metadata, status/spec separation, generation, defaults; then, after
//! admission, validation.

use serde_json::{Map, Value, json};
use skiff_api::object::{field, meta_str, metadata_mut, now_rfc3339, set_field};
use skiff_api::{ApiError, ResourceType, Subresource, validation};

use crate::registry::Kind;

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
/// generation, defaults and initial status. Admission and validation come next.
pub fn prepare_create(
    kind: &dyn Kind,
    obj: &mut Value,
    path_ns: Option<&str>,
) -> Result<(), ApiError> {
    let rt = kind.resource();
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
    if kind.tracks_generation() {
        meta.insert("generation".into(), 1.into());
    } else {
        meta.remove("generation");
    }
    kind.default(obj);
    kind.prepare_for_create(obj);
    Ok(())
}

/// Validates a new object (after its admission).
pub fn validate_create(kind: &dyn Kind, obj: &Value) -> Result<(), ApiError> {
    let mut causes = validation::validate_object_meta(kind.name_rule(), obj);
    causes.extend(validation::validate_labels_and_annotations(obj));
    causes.extend(kind.validate(obj, None));
    refuse_if_any(kind, obj, causes)
}

/// Validates an update of `old` to `new` through the main resource or `subresource`.
pub fn validate_update(
    kind: &dyn Kind,
    new: &Value,
    old: &Value,
    subresource: Option<Subresource>,
) -> Result<(), ApiError> {
    let causes = match subresource {
        // Status writes change nothing but status, which no kind validates yet; finalize
        // writes change a namespace's finalizers alone.
        Some(Subresource::Status | Subresource::Finalize) => Vec::new(),
        Some(other) => kind.validate_subresource(other, new, old),
        None => {
            let mut causes = validation::validate_labels_and_annotations(new);
            causes.extend(kind.validate(new, Some(old)));
            causes
        }
    };
    refuse_if_any(kind, new, causes)
}

/// The Invalid error (422) listing `causes`, if there are any.
fn refuse_if_any(
    kind: &dyn Kind,
    obj: &Value,
    causes: Vec<skiff_api::Cause>,
) -> Result<(), ApiError> {
    if causes.is_empty() {
        return Ok(());
    }
    let name = meta_str(obj, "name").unwrap_or_default();
    Err(ApiError::invalid(kind.resource(), name, causes))
}

/// Prepares an update of `old` to `new` through the main resource or a subresource: system
/// fields come from `old`, the main resource cannot change status and the status
/// subresource can change nothing else, generation counts spec changes.
pub fn prepare_update(
    kind: &dyn Kind,
    new: &mut Value,
    old: &Value,
    subresource: Option<Subresource>,
) -> Result<(), ApiError> {
    let rt = kind.resource();
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
        return Ok(());
    }
    // Finalize writes change only a namespace's spec.finalizers; approval writes only a
    // certificate request's status.conditions.
    let only = match subresource {
        Some(Subresource::Finalize) => Some(["spec", "finalizers"]),
        Some(Subresource::Approval) => Some(["status", "conditions"]),
        _ => None,
    };
    if let Some([section, key]) = only {
        let kept = field(new, &[section, key]).cloned();
        *new = old.clone();
        match kept {
            Some(v) => set_field(new, &[section, key], v),
            None => {
                if let Some(m) = new.get_mut(section).and_then(Value::as_object_mut) {
                    m.remove(key);
                }
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
    kind.default(new);
    if kind.tracks_generation() && spec_of(new) != spec_of(old) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        metadata_mut(new).insert("generation".into(), generation.into());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::apps::deployment::Deployments;
    use crate::registry::core::configmap::ConfigMaps;
    use crate::registry::core::pod::Pods;

    /// A create as the request path makes it (with no admission): prepared, then validated.
    fn create(kind: &dyn Kind, obj: &mut Value, ns: Option<&str>) -> Result<(), ApiError> {
        prepare_create(kind, obj, ns)?;
        validate_create(kind, obj)
    }

    /// An update as the request path makes it: prepared, then validated.
    fn update(
        kind: &dyn Kind,
        new: &mut Value,
        old: &Value,
        sub: Option<Subresource>,
    ) -> Result<(), ApiError> {
        prepare_update(kind, new, old, sub)?;
        validate_update(kind, new, old, sub)
    }

    fn deployment() -> Value {
        json!({"metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}}})
    }

    #[test]
    fn create_fills_system_fields_and_defaults() {
        let rt = &Deployments;
        let mut d = deployment();
        d["status"] = json!({"replicas": 9});
        create(rt, &mut d, Some("default")).unwrap();
        assert_eq!(d["metadata"]["namespace"], "default");
        assert_eq!(d["metadata"]["generation"], 1);
        assert_eq!(d["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert_eq!(d["status"], json!({}));
        assert_eq!(d["kind"], "Deployment");
        assert_eq!(d["spec"]["replicas"], 1);
    }

    #[test]
    fn generate_name_and_namespace_mismatch() {
        let rt = &ConfigMaps;
        let mut cm = json!({"metadata": {"generateName": "cfg-"}});
        create(rt, &mut cm, Some("a")).unwrap();
        let name = cm["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
        let mut cm = json!({"metadata": {"name": "x", "namespace": "b"}});
        assert_eq!(create(rt, &mut cm, Some("a")).unwrap_err().code, 400);
    }

    #[test]
    fn pod_updates_change_only_what_upstream_lets_them() {
        let rt = &Pods;
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "web:v1", "command": ["serve"]}],
            "tolerations": [{"key": "a", "operator": "Exists"}],
            "activeDeadlineSeconds": 100,
        }});
        create(rt, &mut pod, Some("default")).unwrap();
        let update = |change: &dyn Fn(&mut Value)| {
            let mut new = pod.clone();
            change(&mut new);
            update(rt, &mut new, &pod, None)
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
        let rt = &Pods;
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "containers": [{"name": "c", "image": "web:v1"}]}});
        create(rt, &mut pod, Some("default")).unwrap();
        let debugger = json!({"name": "debugger", "image": "busybox", "targetContainerName": "c"});
        let sub = Some(Subresource::EphemeralContainers);
        let mut added = pod.clone();
        added["spec"]["ephemeralContainers"] = json!([debugger]);
        added["metadata"]["labels"] = json!({"ignored": "yes"});
        update(rt, &mut added, &pod, sub).unwrap();
        assert_eq!(added["spec"]["ephemeralContainers"], json!([debugger]));
        assert!(
            added["metadata"].get("labels").is_none(),
            "only ephemeral containers change"
        );
        // Through the main resource they stay as they were.
        let mut main = added.clone();
        main["spec"]["ephemeralContainers"] = json!([]);
        update(rt, &mut main, &added, None).unwrap();
        assert_eq!(main["spec"]["ephemeralContainers"], json!([debugger]));
        let refused = |ephemeral: Value| {
            let mut new = added.clone();
            new["spec"]["ephemeralContainers"] = ephemeral;
            update(rt, &mut new, &added, sub).unwrap_err().message
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
        let rt = &Deployments;
        let mut d = json!({"metadata": {"name": "Web"}, "spec": {"replicas": -1, "template": {"spec": {}}}});
        let e = create(rt, &mut d, Some("default")).unwrap_err();
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
        let rt = &Deployments;
        let mut old = deployment();
        create(rt, &mut old, Some("default")).unwrap();
        old["status"] = json!({"replicas": 1});

        let mut same = old.clone();
        same["metadata"]["labels"] = json!({"x": "y"});
        same["status"] = json!({"replicas": 5});
        update(rt, &mut same, &old, None).unwrap();
        assert_eq!(same["metadata"]["generation"], 1);
        assert_eq!(same["status"]["replicas"], 1);

        let mut scaled = old.clone();
        scaled["spec"]["replicas"] = json!(4);
        update(rt, &mut scaled, &old, None).unwrap();
        assert_eq!(scaled["metadata"]["generation"], 2);

        let mut status = old.clone();
        status["spec"]["replicas"] = json!(9);
        status["status"] = json!({"replicas": 3});
        update(rt, &mut status, &old, Some(Subresource::Status)).unwrap();
        assert_eq!(status["spec"]["replicas"], 1);
        assert_eq!(status["status"]["replicas"], 3);

        let mut moved = old.clone();
        moved["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        moved["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let e = update(rt, &mut moved, &old, None).unwrap_err();
        assert!(e.message.contains("field is immutable"), "{}", e.message);
    }
}

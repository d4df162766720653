//! A pod's validation: its spec (also every pod template's), what an update may change,
//! and what the ephemeral containers subresource may add.

use serde_json::Value;
use skiff_api::Cause;
use skiff_api::object::field;

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
            for e in skiff_api::validation::dns1123_label_errors(n) {
                causes.push(Cause::invalid(format!("{at}.name"), &n.into(), &e));
            }
            if seen.iter().any(|s| s == n) {
                causes.push(Cause::duplicate(format!("{at}.name"), &n.into()));
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

pub(crate) fn validate_pod_spec(spec: Option<&Value>, path: &str, causes: &mut Vec<Cause>) {
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
pub(crate) fn validate_pod_update(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
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
pub(crate) fn validate_ephemeral_containers(new: &Value, old: &Value, causes: &mut Vec<Cause>) {
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

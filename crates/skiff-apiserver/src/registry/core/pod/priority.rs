//! Upstream's Priority admission of a new pod: its `priorityClassName` (or the cluster's
//! global default class, when it names none) becomes `spec.priority` and
//! `spec.preemptionPolicy`; a class that does not exist, or a priority or policy the pod
//! states that differ from its class's, refuse the pod. With no class and no default, the
//! priority is 0. Classes are read from the watch cache, as upstream reads its lister.

use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::{field, field_str, meta_str};

use crate::registry::scheduling;
use crate::state::ApiState;
use crate::watch_cache::Freshness;

/// A class's priority and preemption policy.
struct Resolved {
    name: Option<String>,
    value: i64,
    policy: String,
}

fn resolved(class: &Value) -> Resolved {
    Resolved {
        name: meta_str(class, "name").map(str::to_string),
        value: class.get("value").and_then(Value::as_i64).unwrap_or(0),
        policy: field_str(class, &["preemptionPolicy"])
            .unwrap_or("PreemptLowerPriority")
            .to_string(),
    }
}

/// The cluster's default class: the global default with the lowest value (upstream's pick
/// when several claim it).
async fn global_default(state: &ApiState) -> Result<Option<Value>, ApiError> {
    let classes = state
        .objects_of(&scheduling::RESOURCE, None, Freshness::Any)
        .await?;
    Ok(classes
        .into_iter()
        .filter(|c| c.get("globalDefault").and_then(Value::as_bool) == Some(true))
        .min_by_key(|c| c.get("value").and_then(Value::as_i64).unwrap_or(0)))
}

pub(crate) async fn admit(state: &ApiState, pod: &mut Value) -> Result<(), ApiError> {
    let pod_name = meta_str(pod, "name").unwrap_or_default().to_string();
    let forbidden = |message: String| {
        ApiError::new(
            403,
            "Forbidden",
            format!("pods {pod_name:?} is forbidden: {message}"),
        )
    };
    let named = field_str(pod, &["spec", "priorityClassName"])
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let class = match &named {
        Some(name) => {
            let rt = &scheduling::RESOURCE;
            let cached = state.caches.lookup(rt, None, name).await;
            let found = match cached {
                Some(c) => Some(c),
                None => match state.objects.get(rt, None, name).await {
                    Ok(stored) => Some(stored.object),
                    Err(e) if e.code == 404 => None,
                    Err(e) => return Err(e),
                },
            };
            match found {
                Some(c) => Some(resolved(&c)),
                None => {
                    return Err(forbidden(format!(
                        "no PriorityClass with name {name} was found"
                    )));
                }
            }
        }
        None => global_default(state).await?.map(|c| resolved(&c)),
    };
    let class = class.unwrap_or(Resolved {
        name: None,
        value: 0,
        policy: "PreemptLowerPriority".into(),
    });
    if let Some(stated) = field(pod, &["spec", "priority"]).and_then(Value::as_i64)
        && stated != class.value
    {
        return Err(forbidden(format!(
            "the integer value of priority ({stated}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
            class.value
        )));
    }
    if let Some(stated) = field_str(pod, &["spec", "preemptionPolicy"])
        && stated != class.policy
    {
        return Err(forbidden(format!(
            "the string value of PreemptionPolicy ({stated}) must not be provided in pod spec; priority admission controller computed {} from the given PriorityClass name",
            class.policy
        )));
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(name) = class.name.filter(|_| named.is_none()) {
        spec.insert("priorityClassName".into(), name.into());
    }
    spec.insert("priority".into(), json!(class.value));
    spec.insert("preemptionPolicy".into(), json!(class.policy));
    Ok(())
}

//! The admission upstream's API server gives every new pod by default: DefaultTolerationSeconds
//! and ServiceAccount (the account must exist — `default` is made when missing — and its
//! API credentials are mounted).

use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::meta_str;

use crate::registry::core::serviceaccount::{self, ServiceAccounts};
use crate::state::ApiState;
use crate::strategy;

/// The taints a node gets when it is not ready or unreachable (the node lifecycle
/// controller puts them on).
pub const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";

/// DefaultTolerationSeconds: every new pod tolerates its node being not ready or unreachable
/// (NoExecute) for a while — `--default-not-ready-toleration-seconds` and
/// `--default-unreachable-toleration-seconds`, 300 by default — unless it already says how
/// long it tolerates them. After that its node's pods are evicted.
pub fn default_toleration_seconds(
    pod: &mut Value,
    not_ready_seconds: i64,
    unreachable_seconds: i64,
) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let tolerations = spec.entry("tolerations").or_insert_with(|| json!([]));
    let Some(list) = tolerations.as_array_mut() else {
        return;
    };
    let covers = |t: &Value, key: &str| {
        let t_key = t.get("key").and_then(Value::as_str).unwrap_or("");
        let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
        (t_key == key || t_key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
    };
    for (key, seconds) in [
        (NOT_READY_TAINT, not_ready_seconds),
        (UNREACHABLE_TAINT, unreachable_seconds),
    ] {
        if !list.iter().any(|t| covers(t, key)) {
            list.push(json!({
                "key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": seconds,
            }));
        }
    }
}

/// The ServiceAccount a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// Where a pod's containers find their API credentials (token, ca.crt, namespace).
pub const SERVICE_ACCOUNT_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

pub use skiff_apimachinery::names::ROOT_CA_CONFIGMAP;

/// The prefix of the projected volume that carries a pod's API credentials.
const API_ACCESS_VOLUME: &str = "kube-api-access-";

/// The lifetime the ServiceAccount admission asks for its tokens: upstream's one hour and
/// seven seconds, the odd seconds marking them as admission's own.
const API_ACCESS_TOKEN_SECONDS: i64 = 3607;

/// The ServiceAccount a pod runs as: `spec.serviceAccountName`, else `default` (which is
/// written into the pod, with the deprecated `serviceAccount` mirror).
pub fn pod_service_account(pod: &mut Value) -> String {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return DEFAULT_SERVICE_ACCOUNT.to_string();
    };
    let name = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .or_else(|| spec.get("serviceAccount").and_then(Value::as_str))
        .filter(|n| !n.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string();
    spec.insert("serviceAccountName".into(), json!(name));
    spec.insert("serviceAccount".into(), json!(name));
    name
}

/// ServiceAccount admission, given the pod's account (see [`pod_service_account`]): unless
/// the pod or else the account turns automounting off, every container and init container
/// without a mount of its own at [`SERVICE_ACCOUNT_MOUNT_PATH`] mounts a projected
/// `kube-api-access-<suffix>` volume there (a token for the account, the cluster CA from
/// [`ROOT_CA_CONFIGMAP`], the namespace); a pod without `imagePullSecrets` takes the
/// account's.
pub fn service_account(pod: &mut Value, account: &Value, volume_suffix: &str) {
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let no_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_pull_secrets
        && let Some(secrets) = account
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
    {
        spec.insert("imagePullSecrets".into(), json!(secrets));
    }
    let automount = spec
        .get("automountServiceAccountToken")
        .or_else(|| account.get("automountServiceAccountToken"))
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !automount {
        return;
    }
    let existing = spec
        .get("volumes")
        .and_then(Value::as_array)
        .and_then(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .find(|n| n.starts_with(API_ACCESS_VOLUME))
        })
        .map(str::to_string);
    let volume_name = existing
        .clone()
        .unwrap_or_else(|| format!("{API_ACCESS_VOLUME}{volume_suffix}"));
    let mount = json!({
        "name": volume_name, "readOnly": true, "mountPath": SERVICE_ACCOUNT_MOUNT_PATH,
    });
    let mut mounted = false;
    for list in ["initContainers", "containers"] {
        for c in spec
            .get_mut(list)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let Some(c) = c.as_object_mut() else { continue };
            let mounts = c.entry("volumeMounts").or_insert_with(|| json!([]));
            let Some(mounts) = mounts.as_array_mut() else {
                continue;
            };
            let has_own = mounts.iter().any(|m| {
                m.get("mountPath").and_then(Value::as_str) == Some(SERVICE_ACCOUNT_MOUNT_PATH)
            });
            if !has_own {
                mounts.push(mount.clone());
                mounted = true;
            }
        }
    }
    if !mounted || existing.is_some() {
        return;
    }
    let volumes = spec.entry("volumes").or_insert_with(|| json!([]));
    if let Some(volumes) = volumes.as_array_mut() {
        volumes.push(json!({
            "name": volume_name,
            "projected": {
                "defaultMode": 0o644,
                "sources": [
                    {"serviceAccountToken": {
                        "expirationSeconds": API_ACCESS_TOKEN_SECONDS, "path": "token"}},
                    {"configMap": {"name": ROOT_CA_CONFIGMAP,
                        "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                    {"downwardAPI": {"items": [{"path": "namespace",
                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
                ],
            },
        }));
    }
}

/// Upstream's ServiceAccount admission of a new pod: it runs as an account that exists,
/// with that account's API credentials mounted (see [`service_account`]).
/// Mirror pods are left as they are. A missing `default` account is made here, as the
/// namespace controller would moments later, so a pod created right after its namespace
/// is not refused for that race (upstream's is); any other missing account refuses the pod.
pub(crate) async fn admit_service_account(
    state: &ApiState,
    pod: &mut Value,
) -> Result<(), ApiError> {
    let mirror = pod
        .pointer("/metadata/annotations/kubernetes.io~1config.mirror")
        .is_some();
    if mirror {
        return Ok(());
    }
    let account_name = pod_service_account(pod);
    let ns = meta_str(pod, "namespace").unwrap_or("default").to_string();
    let rt = &serviceaccount::RESOURCE;
    // The account from the watch cache when it holds it (a moment's staleness is harmless
    // here); one it does not hold yet is looked up in the datastore.
    let cached = state.caches.lookup(rt, Some(&ns), &account_name).await;
    let found = match cached {
        Some(account) => Ok(account),
        None => state
            .objects
            .get(rt, Some(&ns), &account_name)
            .await
            .map(|f| f.object),
    };
    let account = match found {
        Ok(account) => account,
        Err(e) if e.code == 404 && account_name == DEFAULT_SERVICE_ACCOUNT => {
            let mut fresh = json!({"metadata": {"name": account_name}});
            strategy::prepare_create(&ServiceAccounts, &mut fresh, Some(&ns))?;
            strategy::validate_create(&ServiceAccounts, &fresh)?;
            match state.objects.create(rt, fresh).await {
                Ok(stored) => stored.object,
                Err(e) if e.code == 409 => {
                    state
                        .objects
                        .get(rt, Some(&ns), &account_name)
                        .await?
                        .object
                }
                Err(e) => return Err(e),
            }
        }
        Err(e) if e.code == 404 => {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!(
                    "pods {:?} is forbidden: error looking up service account {ns}/{account_name}: serviceaccount {account_name:?} not found",
                    meta_str(pod, "name").unwrap_or_default()
                ),
            ));
        }
        Err(e) => return Err(e),
    };
    service_account(pod, &account, &strategy::name_suffix());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_both_tolerations_unless_present() {
        let mut pod = json!({"spec": {"containers": []}});
        default_toleration_seconds(&mut pod, 300, 60);
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": NOT_READY_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
            ])
        );
        let mut own = json!({"spec": {"tolerations": [
            {"key": UNREACHABLE_TAINT, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 5}]}});
        default_toleration_seconds(&mut own, 300, 300);
        let list = own["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["tolerationSeconds"], 5, "the pod's own is kept");
        let mut all = json!({"spec": {"tolerations": [{"operator": "Exists"}]}});
        default_toleration_seconds(&mut all, 300, 300);
        assert_eq!(all["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    fn pod() -> Value {
        json!({"spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app"}, {"name": "own", "volumeMounts": [
                {"name": "mine", "mountPath": SERVICE_ACCOUNT_MOUNT_PATH}]}],
        }})
    }

    #[test]
    fn pods_run_as_default_unless_they_name_an_account() {
        let mut p = pod();
        assert_eq!(pod_service_account(&mut p), "default");
        assert_eq!(p["spec"]["serviceAccountName"], "default");
        assert_eq!(p["spec"]["serviceAccount"], "default");
        let mut named = json!({"spec": {"serviceAccount": "builder"}});
        assert_eq!(pod_service_account(&mut named), "builder");
        assert_eq!(named["spec"]["serviceAccountName"], "builder");
    }

    #[test]
    fn api_access_is_mounted_where_nothing_else_is() {
        let mut p = pod();
        service_account(&mut p, &json!({}), "abcde");
        let spec = &p["spec"];
        let mount = json!({"name": "kube-api-access-abcde", "readOnly": true,
            "mountPath": SERVICE_ACCOUNT_MOUNT_PATH});
        assert_eq!(spec["initContainers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(spec["containers"][0]["volumeMounts"], json!([mount]));
        assert_eq!(
            spec["containers"][1]["volumeMounts"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let volumes = spec["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 1);
        let sources = &volumes[0]["projected"]["sources"];
        assert_eq!(sources[0]["serviceAccountToken"]["path"], "token");
        assert_eq!(sources[0]["serviceAccountToken"]["expirationSeconds"], 3607);
        assert_eq!(sources[1]["configMap"]["name"], ROOT_CA_CONFIGMAP);
        assert_eq!(sources[2]["downwardAPI"]["items"][0]["path"], "namespace");
        // Admitting again (an apply that creates) adds nothing twice.
        service_account(&mut p, &json!({}), "zzzzz");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([mount]));
    }

    #[test]
    fn automount_is_the_pods_choice_then_the_accounts() {
        let off = json!({"automountServiceAccountToken": false});
        let mut p = pod();
        service_account(&mut p, &off, "abcde");
        assert!(p["spec"].get("volumes").is_none());
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(true);
        service_account(&mut p, &off, "abcde");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        let mut p = pod();
        p["spec"]["automountServiceAccountToken"] = json!(false);
        service_account(&mut p, &json!({}), "abcde");
        assert!(p["spec"].get("volumes").is_none());
    }

    #[test]
    fn pull_secrets_come_from_the_account_when_the_pod_has_none() {
        let account = json!({"imagePullSecrets": [{"name": "registry"}]});
        let mut p = pod();
        service_account(&mut p, &account, "abcde");
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "registry"}]));
        let mut own = pod();
        own["spec"]["imagePullSecrets"] = json!([{"name": "mine"}]);
        service_account(&mut own, &account, "abcde");
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }
}

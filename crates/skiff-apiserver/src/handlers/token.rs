//! `serviceaccounts/<name>/token`: TokenRequest, as `kubectl create token` uses it.

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::meta_str;

use crate::negotiate::{Output, respond};
use crate::request::ResourceRequest;
use crate::sa_token::{BoundPod, ISSUER, ServiceAccountIdentity};
use crate::state::ApiState;

/// Upstream's bounds on `spec.expirationSeconds`: at least ten minutes; one hour by default.
const MIN_EXPIRATION: u64 = 600;
const DEFAULT_EXPIRATION: u64 = 3600;

pub(super) async fn create_token(
    state: &ApiState,
    rr: &ResourceRequest,
    request: &Value,
    output: Output,
) -> Result<Response, ApiError> {
    let name = rr.name_or_empty();
    let namespace = rr.namespace.as_deref().unwrap_or("default");
    let account = state.objects.get(rr.rt(), Some(namespace), name).await?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => match v.as_u64() {
            Some(s) if s >= MIN_EXPIRATION => s,
            _ => {
                return Err(ApiError::invalid(
                    rr.rt(),
                    name,
                    vec![skiff_api::Cause::invalid(
                        "spec.expirationSeconds",
                        v,
                        "may not specify a duration less than 10 minutes",
                    )],
                ));
            }
        },
    };
    let audiences: Vec<String> = spec
        .get("audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .filter(|a: &Vec<String>| !a.is_empty())
        .unwrap_or_else(|| vec![ISSUER.to_string()]);
    let who = ServiceAccountIdentity {
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: meta_str(&account.object, "uid")
            .unwrap_or_default()
            .to_string(),
    };
    let bound = match spec.get("boundObjectRef").filter(|r| !r.is_null()) {
        Some(reference) => Some(bound_pod(state, rr, namespace, reference).await?),
        None => None,
    };
    let (token, expires) = state
        .auth
        .tokens
        .issue(&who, &audiences, seconds, bound.as_ref());
    let expiration = time::OffsetDateTime::from_unix_timestamp(expires as i64)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default();
    let body = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "creationTimestamp": skiff_api::object::now_rfc3339(),
        },
        "spec": {
            "audiences": audiences,
            "expirationSeconds": seconds,
            "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
        },
        "status": {"token": token, "expirationTimestamp": expiration},
    });
    Ok(respond(StatusCode::CREATED, &body, output))
}

/// The pod a token is to be bound to: it must exist (with the uid named, if one is) and
/// run as the account the token is for, as upstream checks. Pods are the only kind of
/// bound object served.
async fn bound_pod(
    state: &ApiState,
    rr: &ResourceRequest,
    namespace: &str,
    reference: &Value,
) -> Result<BoundPod, ApiError> {
    let field = |k: &str| reference.get(k).and_then(Value::as_str).unwrap_or_default();
    let (kind, name, uid) = (field("kind"), field("name"), field("uid"));
    if kind != "Pod" || !matches!(field("apiVersion"), "" | "v1") {
        return Err(ApiError::bad_request(format!(
            "cannot bind a token to a {kind:?} object: only pods (v1) can be bound"
        )));
    }
    let pods = &crate::registry::core::pod::RESOURCE;
    let pod = state.objects.get(pods, Some(namespace), name).await?.object;
    let actual_uid = meta_str(&pod, "uid").unwrap_or_default();
    if !uid.is_empty() && uid != actual_uid {
        return Err(ApiError::new(
            409,
            "Conflict",
            format!(
                "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
            ),
        ));
    }
    let runs_as = skiff_api::object::field(&pod, &["spec", "serviceAccountName"])
        .and_then(Value::as_str)
        .unwrap_or(crate::registry::core::pod::admission::DEFAULT_SERVICE_ACCOUNT);
    if runs_as != rr.name_or_empty() {
        return Err(ApiError::bad_request(format!(
            "cannot bind token for serviceaccount {:?} to pod running with different serviceaccount name.",
            rr.name_or_empty()
        )));
    }
    Ok(BoundPod {
        name: name.to_string(),
        uid: actual_uid.to_string(),
    })
}

//! `serviceaccounts/<name>/token`: TokenRequest, as `kubectl create token` uses it.

use super::*;
use crate::sa_token::{ISSUER, ServiceAccountIdentity};

/// Upstream's bounds on `spec.expirationSeconds`: at least ten minutes; one hour by default.
const MIN_EXPIRATION: u64 = 600;
const DEFAULT_EXPIRATION: u64 = 3600;

pub(super) async fn create_token(
    state: &ApiState,
    rr: &ResourceRequest,
    request: &Value,
    output: Output,
) -> Result<Response, ApiError> {
    let name = name_of(rr);
    let namespace = rr.namespace.as_deref().unwrap_or("default");
    let account = state.objects.get(rr.rt, Some(namespace), name).await?;
    let spec = request.get("spec").cloned().unwrap_or_else(|| json!({}));
    let seconds = match spec.get("expirationSeconds") {
        None | Some(Value::Null) => DEFAULT_EXPIRATION,
        Some(v) => match v.as_u64() {
            Some(s) if s >= MIN_EXPIRATION => s,
            _ => {
                return Err(ApiError::invalid(
                    rr.rt,
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
    let (token, expires) = state.tokens.issue(&who, &audiences, seconds);
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

//! The cluster CA's signer of CertificateSigningRequests, as upstream's `csrsigning`
//! controller: an approved request for one of upstream's built-in signers gets its
//! certificate (`status.certificate`), valid for its `expirationSeconds` (a year at most);
//! one its signer refuses gets a `Failed` condition saying why. Requests for other signers
//! are left to whoever signs for them.
//!
//! Signers and what each allows (upstream's):
//! - `kubernetes.io/kube-apiserver-client`: client certificates (`client auth`).
//! - `kubernetes.io/kube-apiserver-client-kubelet`: a node's client certificate
//!   (`system:node:<name>` in `system:nodes`).
//! - `kubernetes.io/kubelet-serving`: a node's serving certificate (`server auth`, same
//!   subject).

use std::sync::Arc;
use std::time::Duration;

use rcgen::{ExtendedKeyUsagePurpose, Issuer, KeyPair, KeyUsagePurpose};
use serde_json::{Value, json};
use skiff_api::ApiError;
use skiff_api::object::field_str;
use tokio::sync::broadcast::error::RecvError;

use crate::registry::certificates::{RESOURCE, condition, parse_request};
use crate::state::ApiState;
use crate::watch_cache::Freshness;

/// The longest certificate issued (upstream's `--cluster-signing-duration`).
const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// What a signer allows: (name, usages allowed, usages required, node subject).
const SIGNERS: &[(&str, &[&str], &str, bool)] = &[
    (
        "kubernetes.io/kube-apiserver-client",
        &["digital signature", "key encipherment", "client auth"],
        "client auth",
        false,
    ),
    (
        "kubernetes.io/kube-apiserver-client-kubelet",
        &["digital signature", "key encipherment", "client auth"],
        "client auth",
        true,
    ),
    (
        "kubernetes.io/kubelet-serving",
        &["digital signature", "key encipherment", "server auth"],
        "server auth",
        true,
    ),
];

/// Signs approved requests for as long as the server runs.
pub async fn run(state: Arc<ApiState>, ca: Arc<Issuer<'static, KeyPair>>) {
    loop {
        let mut changes = match state.caches.cache(&RESOURCE).await {
            Ok(cache) => cache.subscribe(None).map(|s| s.rx),
            Err(_) => None,
        };
        loop {
            if let Err(e) = sign_approved(&state, &ca).await {
                tracing::warn!(error = %e, "signing certificate requests");
            }
            match &mut changes {
                Some(rx) => match rx.recv().await {
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => break,
                },
                None => {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    break;
                }
            }
        }
    }
}

async fn sign_approved(state: &ApiState, ca: &Issuer<'static, KeyPair>) -> Result<(), ApiError> {
    for csr in state.objects_of(&RESOURCE, None, Freshness::Any).await? {
        let waiting = condition(&csr, "Approved").is_some()
            && condition(&csr, "Denied").is_none()
            && condition(&csr, "Failed").is_none()
            && field_str(&csr, &["status", "certificate"]).is_none_or(str::is_empty);
        let signer = field_str(&csr, &["spec", "signerName"]).unwrap_or_default();
        let Some(rules) = SIGNERS.iter().find(|(name, ..)| *name == signer) else {
            continue;
        };
        if !waiting {
            continue;
        }
        let mut signed = csr.clone();
        match sign(&csr, rules, ca) {
            Ok(pem) => {
                use base64::Engine;
                signed["status"]["certificate"] =
                    base64::engine::general_purpose::STANDARD.encode(pem).into();
            }
            Err(why) => {
                let conditions = signed["status"]
                    .as_object_mut()
                    .map(|s| s.entry("conditions").or_insert_with(|| json!([])));
                if let Some(Value::Array(list)) = conditions {
                    list.push(json!({"type": "Failed", "status": "True",
                        "reason": "SignerValidationFailure", "message": why,
                        "lastUpdateTime": skiff_api::object::now_rfc3339(),
                        "lastTransitionTime": skiff_api::object::now_rfc3339()}));
                }
            }
        }
        // Changed meanwhile: its event brings another pass.
        state
            .objects
            .update_if_unchanged(&RESOURCE, signed, &csr)
            .await?;
    }
    Ok(())
}

/// The certificate for a request (PEM), or why its signer refuses it.
fn sign(
    csr: &Value,
    (_, allowed, required, node): &(&str, &[&str], &str, bool),
    ca: &Issuer<'static, KeyPair>,
) -> Result<String, String> {
    let usages = skiff_api::object::string_list(csr["spec"].get("usages"));
    if let Some(u) = usages.iter().find(|u| !allowed.contains(&u.as_str())) {
        return Err(format!(
            "usage {u:?} is not allowed by this signer (allowed: {allowed:?})"
        ));
    }
    if !usages.iter().any(|u| u == required) {
        return Err(format!("the usages must include {required:?}"));
    }
    let request = field_str(csr, &["spec", "request"]).unwrap_or_default();
    let mut params = parse_request(request)?;
    if *node {
        let dn = &params.params.distinguished_name;
        let text = |ty: rcgen::DnType| -> String {
            match dn.get(&ty) {
                Some(rcgen::DnValue::Utf8String(s)) => s.clone(),
                Some(rcgen::DnValue::PrintableString(s)) => s.as_str().to_string(),
                Some(rcgen::DnValue::Ia5String(s)) => s.as_str().to_string(),
                _ => String::new(),
            }
        };
        let cn = text(rcgen::DnType::CommonName);
        if cn.strip_prefix("system:node:").is_none_or(str::is_empty) {
            return Err(format!(
                "the subject's common name must be system:node:<node name>, not {cn:?}"
            ));
        }
        if text(rcgen::DnType::OrganizationName) != "system:nodes" {
            return Err("the subject's organization must be system:nodes".into());
        }
    }
    let seconds = csr["spec"]["expirationSeconds"]
        .as_u64()
        .map_or(MAX_DURATION, |s| Duration::from_secs(s).min(MAX_DURATION));
    let now = time::OffsetDateTime::now_utc();
    let p = &mut params.params;
    // Backdated as upstream's, for clocks a little behind.
    p.not_before = now - time::Duration::minutes(5);
    p.not_after = now + time::Duration::try_from(seconds).unwrap_or(time::Duration::days(365));
    p.is_ca = rcgen::IsCa::NoCa;
    p.key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            _ => None,
        })
        .collect();
    p.extended_key_usages = usages
        .iter()
        .filter_map(|u| match u.as_str() {
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            _ => None,
        })
        .collect();
    let mut serial = [0u8; 16];
    getrandom::fill(&mut serial).map_err(|e| format!("no randomness for a serial number: {e}"))?;
    serial[0] &= 0x7f;
    p.serial_number = Some(rcgen::SerialNumber::from_slice(&serial));
    params
        .signed_by(ca)
        .map(|cert| cert.pem())
        .map_err(|e| format!("signing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> Issuer<'static, KeyPair> {
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        let cert = params.self_signed(&key).unwrap();
        Issuer::from_ca_cert_pem(&cert.pem(), key).unwrap()
    }

    fn csr(cn: &str, org: &str, signer: &str, usages: &[&str]) -> Value {
        use base64::Engine;
        let key = KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, org);
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        json!({"spec": {"request": base64::engine::general_purpose::STANDARD.encode(pem),
            "signerName": signer, "usages": usages, "expirationSeconds": 3600}})
    }

    fn rules(signer: &str) -> &'static (&'static str, &'static [&'static str], &'static str, bool) {
        SIGNERS.iter().find(|(n, ..)| *n == signer).unwrap()
    }

    #[test]
    fn each_signer_signs_what_it_allows_and_says_why_not() {
        let ca = ca();
        let client = "kubernetes.io/kube-apiserver-client";
        let pem = sign(
            &csr("jane", "devs", client, &["client auth"]),
            rules(client),
            &ca,
        )
        .unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let err = sign(
            &csr("jane", "devs", client, &["server auth"]),
            rules(client),
            &ca,
        )
        .unwrap_err();
        assert!(err.contains("\"server auth\" is not allowed"), "{err}");
        let serving = "kubernetes.io/kubelet-serving";
        let usages = ["digital signature", "server auth"];
        assert!(
            sign(
                &csr("system:node:n1", "system:nodes", serving, &usages),
                rules(serving),
                &ca
            )
            .is_ok()
        );
        let err = sign(
            &csr("web", "system:nodes", serving, &usages),
            rules(serving),
            &ca,
        )
        .unwrap_err();
        assert!(err.contains("system:node:<node name>"), "{err}");
        let err = sign(
            &csr("system:node:n1", "devs", serving, &usages),
            rules(serving),
            &ca,
        )
        .unwrap_err();
        assert!(err.contains("system:nodes"), "{err}");
    }
}

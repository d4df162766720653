//! `certificates.k8s.io/v1`: CertificateSigningRequests. A request names its requester
//! (set from who created it, as upstream's), is approved or denied through its `approval`
//! subresource (`kubectl certificate approve|deny`), and is signed by the cluster CA
//! (`csr_signer.rs`) when its signer is one of upstream's built-in ones.

use serde_json::{Value, json};
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::table::{AGE, Column, NAME, Printer, age_cell, arr, text};
use skiff_api::{Cause, ResourceType, Subresource};
use time::OffsetDateTime;

use crate::authn::UserInfo;
use crate::registry::{Kind, Pending};
use crate::state::ApiState;

pub static RESOURCE: ResourceType = skiff_api::resource_type!("certificates.k8s.io", "v1",
    "CertificateSigningRequest", "certificatesigningrequests", "certificatesigningrequest",
    namespaced: false, short: ["csr"], categories: [], sub: [Approval, Status]);

/// Upstream's key usages.
pub const USAGES: &[&str] = &[
    "signing",
    "digital signature",
    "content commitment",
    "key encipherment",
    "key agreement",
    "data encipherment",
    "cert sign",
    "crl sign",
    "encipher only",
    "decipher only",
    "any",
    "server auth",
    "client auth",
    "code signing",
    "email protection",
    "s/mime",
    "ipsec end system",
    "ipsec tunnel",
    "ipsec user",
    "timestamping",
    "ocsp signing",
    "microsoft sgc",
    "netscape sgc",
];

/// A condition of the request's status, if it has one of this type.
pub fn condition<'a>(csr: &'a Value, ty: &str) -> Option<&'a Value> {
    arr(csr, &["status", "conditions"])
        .iter()
        .find(|c| c["type"] == ty)
}

pub struct CertificateSigningRequests;

impl Kind for CertificateSigningRequests {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    /// Upstream's `PrepareForCreate`: a request says who made it, whatever it claims.
    fn admit<'a>(
        &'a self,
        _state: &'a ApiState,
        user: &'a UserInfo,
        obj: &'a mut Value,
    ) -> Pending<'a, ()> {
        set_requester(obj, user);
        crate::registry::ready(())
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        obj["status"] = json!({});
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        match field_str(obj, &["spec", "request"]) {
            None | Some("") => causes.push(Cause::required("spec.request")),
            Some(request) => {
                if let Err(why) = parse_request(request) {
                    causes.push(Cause::invalid("spec.request", &"<request>".into(), &why));
                }
            }
        }
        match field_str(obj, &["spec", "signerName"]) {
            None | Some("") => causes.push(Cause::required("spec.signerName")),
            Some(signer) => {
                let ok = signer.split_once('/').is_some_and(|(domain, path)| {
                    domain.contains('.')
                        && skiff_api::validation::dns1123_subdomain_errors(domain).is_empty()
                        && !path.is_empty()
                });
                if !ok {
                    causes.push(Cause::invalid(
                        "spec.signerName",
                        &signer.into(),
                        "must be a fully qualified domain and path of the form 'example.com/signer-name'",
                    ));
                }
            }
        }
        let usages = arr(obj, &["spec", "usages"]);
        if usages.is_empty() {
            causes.push(Cause::required("spec.usages"));
        }
        for (i, u) in usages.iter().enumerate() {
            if !u.as_str().is_some_and(|u| USAGES.contains(&u)) {
                causes.push(Cause::not_supported(format!("spec.usages[{i}]"), u, USAGES));
            }
        }
        if let Some(seconds) = field(obj, &["spec", "expirationSeconds"]).and_then(Value::as_i64)
            && seconds < 600
        {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                &seconds.into(),
                "may not specify a duration less than 600 seconds (10 minutes)",
            ));
        }
        if let Some(old) = old
            && obj.get("spec") != old.get("spec")
        {
            causes.push(Cause::invalid(
                "spec",
                &"<spec>".into(),
                "field is immutable",
            ));
        }
        causes
    }

    fn validate_subresource(
        &self,
        subresource: Subresource,
        new: &Value,
        old: &Value,
    ) -> Vec<Cause> {
        if subresource != Subresource::Approval {
            return Vec::new();
        }
        let mut causes = Vec::new();
        let conditions = arr(new, &["status", "conditions"]);
        for (i, c) in conditions.iter().enumerate() {
            let ty = c["type"].as_str().unwrap_or_default();
            if ty.is_empty() {
                causes.push(Cause::required(format!("status.conditions[{i}].type")));
            }
            if matches!(ty, "Approved" | "Denied") && c["status"] != "True" {
                causes.push(Cause::not_supported(
                    format!("status.conditions[{i}].status"),
                    &c["status"],
                    &["True"],
                ));
            }
        }
        if condition(new, "Approved").is_some() && condition(new, "Denied").is_some() {
            causes.push(Cause::invalid(
                "status.conditions",
                &"Approved".into(),
                "Approved and Denied conditions are mutually exclusive",
            ));
        }
        for ty in ["Approved", "Denied"] {
            if condition(old, ty).is_some() && condition(new, ty).is_none() {
                causes.push(Cause::forbidden(
                    "status.conditions",
                    &format!("updates may not remove a condition of type {ty:?}"),
                ));
            }
        }
        causes
    }
}

/// The request's `username`, `uid`, `groups` and `extra`: its creator's.
fn set_requester(obj: &mut Value, user: &UserInfo) {
    if !obj["spec"].is_object() {
        obj["spec"] = json!({});
    }
    let spec = obj["spec"].as_object_mut().expect("made an object");
    spec.insert("username".into(), user.username.clone().into());
    spec.insert("groups".into(), json!(user.groups));
    for (key, value) in [("uid", json!(user.uid)), ("extra", json!(user.extra))] {
        let empty = value.as_str().is_some_and(str::is_empty)
            || value.as_object().is_some_and(|m| m.is_empty());
        if empty {
            spec.remove(key);
        } else {
            spec.insert(key.into(), value);
        }
    }
}

/// Whether a request is a PEM certificate request whose signature holds.
pub fn parse_request(request_b64: &str) -> Result<rcgen::CertificateSigningRequestParams, String> {
    use base64::Engine;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(request_b64)
        .map_err(|_| "must be base64-encoded PEM".to_string())?;
    let pem = String::from_utf8(pem).map_err(|_| "must be PEM-encoded".to_string())?;
    if !pem.contains("-----BEGIN CERTIFICATE REQUEST-----") {
        return Err("PEM block type must be CERTIFICATE REQUEST".into());
    }
    rcgen::CertificateSigningRequestParams::from_pem(&pem)
        .map_err(|e| format!("the certificate request cannot be read: {e}"))
}

impl Printer for CertificateSigningRequests {
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            AGE,
            Column::new(
                "SignerName",
                "string",
                0,
                "Name of the signer that will sign the certificate.",
            ),
            Column::new(
                "Requestor",
                "string",
                0,
                "Name of the user requesting the certificate.",
            ),
            Column::new(
                "RequestedDuration",
                "string",
                0,
                "Requested certificate duration.",
            ),
            Column::new(
                "Condition",
                "string",
                0,
                "Approval state of the certificate request.",
            ),
        ]
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let duration = field(obj, &["spec", "expirationSeconds"])
            .and_then(Value::as_i64)
            .map_or("<none>".to_string(), skiff_api::object::human_duration);
        let mut state: Vec<&str> = arr(obj, &["status", "conditions"])
            .iter()
            .filter_map(|c| c["type"].as_str())
            .collect();
        if field_str(obj, &["status", "certificate"]).is_some_and(|c| !c.is_empty()) {
            state.push("Issued");
        }
        let state = if state.is_empty() {
            "Pending".to_string()
        } else {
            state.join(",")
        };
        vec![
            text(meta_str(obj, "name")),
            age_cell(obj, now),
            text(field_str(obj, &["spec", "signerName"])),
            text(field_str(obj, &["spec", "username"])),
            duration.into(),
            state.into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn request(cn: &str) -> String {
        use base64::Engine;
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let csr = params.serialize_request(&key).unwrap();
        base64::engine::general_purpose::STANDARD.encode(csr.pem().unwrap())
    }

    #[test]
    fn requests_are_validated_and_say_who_asked() {
        let mut csr = json!({"metadata": {"name": "jane"}, "spec": {"request": request("jane"),
            "signerName": "kubernetes.io/kube-apiserver-client", "usages": ["client auth"],
            "username": "someone-else"}});
        set_requester(&mut csr, &UserInfo::admin());
        assert_eq!(csr["spec"]["username"], "system:admin");
        assert_eq!(
            csr["spec"]["groups"],
            json!(["system:masters", "system:authenticated"])
        );
        assert!(CertificateSigningRequests.validate(&csr, None).is_empty());
        let bad = json!({"spec": {"request": "bm90IHBlbQ==", "signerName": "nodomain",
            "usages": ["flying"], "expirationSeconds": 60}});
        let fields: Vec<String> = CertificateSigningRequests
            .validate(&bad, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.request",
                "spec.signerName",
                "spec.usages[0]",
                "spec.expirationSeconds"
            ]
        );
    }
}

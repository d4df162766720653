//! Validation shared by every kind: object names and metadata, as upstream's
//! `ValidateObjectMeta`. Kind-specific rules live beside the kind's defaults.

use serde_json::Value;

use crate::object::meta_str;
use crate::resources::ResourceType;
use crate::status::Cause;

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// RFC 1123 label: lower-case alphanumerics and `-`, starting and ending alphanumeric, ≤ 63.
pub fn dns1123_label_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    let ok = !value.is_empty()
        && value.chars().all(is_label_char)
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !ok {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".into());
    }
    errs
}

/// RFC 1123 subdomain: dot-separated labels, ≤ 253.
pub fn dns1123_subdomain_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    let ok = !value.is_empty()
        && value.split('.').all(|l| {
            !l.is_empty()
                && l.chars().all(is_label_char)
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if !ok {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".into());
    }
    errs
}

/// Kinds whose names must be DNS labels rather than subdomains (upstream's per-kind rule).
fn name_is_label(rt: &ResourceType) -> bool {
    matches!((rt.group, rt.kind), ("", "Namespace") | ("", "Service"))
}

/// The causes that make an object's metadata invalid for creation.
pub fn validate_object_meta(rt: &ResourceType, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match meta_str(obj, "name") {
        None | Some("") => causes.push(Cause::required("metadata.name")),
        Some(name) => {
            let errs = if name_is_label(rt) {
                dns1123_label_errors(name)
            } else {
                dns1123_subdomain_errors(name)
            };
            for e in errs {
                causes.push(Cause::invalid(
                    "metadata.name",
                    &Value::String(name.into()),
                    &e,
                ));
            }
        }
    }
    for map in ["labels", "annotations"] {
        if let Some(v) = obj.get("metadata").and_then(|m| m.get(map))
            && let Some(m) = v.as_object()
        {
            for (k, val) in m {
                if !val.is_string() {
                    causes.push(Cause::invalid(
                        format!("metadata.{map}"),
                        val,
                        &format!("value of key {k:?} must be a string"),
                    ));
                }
            }
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::lookup;
    use serde_json::json;

    #[test]
    fn names_follow_rfc_1123() {
        assert!(dns1123_subdomain_errors("web-1.example").is_empty());
        assert!(!dns1123_subdomain_errors("Web").is_empty());
        assert!(!dns1123_subdomain_errors("-web").is_empty());
        assert!(!dns1123_label_errors("a.b").is_empty());
        assert!(!dns1123_label_errors(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn metadata_causes_name_the_field() {
        let ns = lookup("", "v1", "namespaces").unwrap();
        let causes = validate_object_meta(ns, &json!({"metadata": {"name": "a.b"}}));
        assert_eq!(causes[0].field, "metadata.name");
        let cm = lookup("", "v1", "configmaps").unwrap();
        assert!(validate_object_meta(cm, &json!({"metadata": {"name": "a.b"}})).is_empty());
        assert_eq!(
            validate_object_meta(cm, &json!({"metadata": {}}))[0].reason,
            "FieldValueRequired"
        );
    }
}

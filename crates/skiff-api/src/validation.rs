//! Validation shared by every kind: object names and metadata, as upstream's
//! `ValidateObjectMeta`. Kind-specific rules live beside the kind's defaults.

use serde_json::Value;

use crate::object::meta_str;
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

const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.'
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(is_name_char)
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Errors of a qualified name (label and annotation keys): an optional DNS subdomain prefix
/// and `/`, then a name part of at most 63 characters.
pub fn qualified_name_errors(key: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".into());
        } else {
            errs.extend(
                dns1123_subdomain_errors(p)
                    .into_iter()
                    .map(|e| format!("prefix part {e}")),
            );
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".into());
    } else {
        if name.len() > QUALIFIED_NAME_MAX {
            errs.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX} characters"
            ));
        }
        if !is_name_part(name) {
            errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".into());
        }
    }
    errs
}

/// Errors of a label value: empty, or a name part of at most 63 characters.
pub fn label_value_errors(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > LABEL_VALUE_MAX {
        errs.push(format!("must be no more than {LABEL_VALUE_MAX} characters"));
    }
    if !value.is_empty() && !is_name_part(value) {
        errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".into());
    }
    errs
}

/// The causes that make a labels map invalid, at `path` (`metadata.labels`).
pub fn validate_labels(labels: Option<&Value>, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(map) = labels.and_then(Value::as_object) else {
        return causes;
    };
    for (k, v) in map {
        for e in qualified_name_errors(k) {
            causes.push(Cause::invalid(path, &Value::String(k.clone()), &e));
        }
        match v.as_str() {
            Some(value) => {
                for e in label_value_errors(value) {
                    causes.push(Cause::invalid(path, v, &e));
                }
            }
            None => causes.push(Cause::invalid(
                path,
                v,
                &format!("value of key {k:?} must be a string"),
            )),
        }
    }
    causes
}

/// What a kind's object names must be (upstream's per-kind name validation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// An RFC 1123 subdomain: most kinds.
    Subdomain,
    /// An RFC 1123 label (names that become DNS labels: namespaces, services).
    Label,
    /// Anything that can be a path segment (RBAC's roles and bindings: `system:…` names).
    PathSegment,
}

/// Why `name` cannot be a path segment (upstream's `ValidatePathSegmentName`).
pub fn path_segment_errors(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    match name {
        "." => errs.push("may not be '.'".to_string()),
        ".." => errs.push("may not be '..'".to_string()),
        _ => {}
    }
    for illegal in ["/", "%"] {
        if name.contains(illegal) {
            errs.push(format!("may not contain '{illegal}'"));
        }
    }
    errs
}

/// The causes that make an object's metadata invalid for creation.
pub fn validate_object_meta(rule: NameRule, obj: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match meta_str(obj, "name") {
        None | Some("") => causes.push(Cause::required("metadata.name")),
        Some(name) => {
            let errs = match rule {
                NameRule::Label => dns1123_label_errors(name),
                NameRule::Subdomain => dns1123_subdomain_errors(name),
                NameRule::PathSegment => path_segment_errors(name),
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
    causes
}

/// The causes that make labels and annotations invalid (on every create and update).
pub fn validate_labels_and_annotations(obj: &Value) -> Vec<Cause> {
    let meta = obj.get("metadata");
    let mut causes = validate_labels(meta.and_then(|m| m.get("labels")), "metadata.labels");
    if let Some(map) = meta
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object)
    {
        let mut total = 0;
        for (k, v) in map {
            for e in qualified_name_errors(&k.to_lowercase()) {
                causes.push(Cause::invalid(
                    "metadata.annotations",
                    &Value::String(k.clone()),
                    &e,
                ));
            }
            match v.as_str() {
                Some(value) => total += k.len() + value.len(),
                None => causes.push(Cause::invalid(
                    "metadata.annotations",
                    v,
                    &format!("value of key {k:?} must be a string"),
                )),
            }
        }
        if total > ANNOTATIONS_MAX_BYTES {
            causes.push(Cause::too_long(
                "metadata.annotations",
                &format!("must have at most {ANNOTATIONS_MAX_BYTES} bytes"),
            ));
        }
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn labels_are_qualified_names_with_short_values() {
        assert!(qualified_name_errors("app.kubernetes.io/name").is_empty());
        assert!(qualified_name_errors("app").is_empty());
        assert!(!qualified_name_errors("bad key").is_empty());
        assert!(!qualified_name_errors("/x").is_empty());
        assert!(!qualified_name_errors(&"a".repeat(64)).is_empty());
        assert!(label_value_errors("").is_empty());
        assert!(label_value_errors("v1.2_3").is_empty());
        assert!(!label_value_errors("-bad").is_empty());
        let causes = validate_labels_and_annotations(&json!({"metadata": {
            "labels": {"ok": "yes", "bad key": "x", "k": "no way"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "n": 1}}}));
        let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(
            fields,
            ["metadata.labels", "metadata.labels", "metadata.annotations"]
        );
        assert!(
            causes[0]
                .message
                .starts_with("metadata.labels: Invalid value: \"bad key\": name part must consist"),
            "{}",
            causes[0].message
        );
    }

    #[test]
    fn metadata_causes_name_the_field() {
        let (label, subdomain) = (NameRule::Label, NameRule::Subdomain);
        let causes = validate_object_meta(label, &json!({"metadata": {"name": "a.b"}}));
        assert_eq!(causes[0].field, "metadata.name");
        assert!(validate_object_meta(subdomain, &json!({"metadata": {"name": "a.b"}})).is_empty());
        let segment = NameRule::PathSegment;
        assert!(
            validate_object_meta(segment, &json!({"metadata": {"name": "system:a"}})).is_empty()
        );
        assert_eq!(
            validate_object_meta(segment, &json!({"metadata": {"name": "a/b"}}))[0].message,
            "metadata.name: Invalid value: \"a/b\": may not contain '/'"
        );
        assert_eq!(
            validate_object_meta(subdomain, &json!({"metadata": {}}))[0].reason,
            "FieldValueRequired"
        );
    }
}

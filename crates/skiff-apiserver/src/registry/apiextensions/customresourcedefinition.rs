//! CustomResourceDefinition objects: upstream's defaults and validation (names, scope,
//! versions, structural schemas, subresources, printer columns, selectable fields). What a
//! definition serves is `custom.rs`; accepting its names, establishing it and cleaning up
//! after it is `crd_controller.rs`.

use serde_json::{Value, json};
use skiff_api::jsonpath::JsonPath;
use skiff_api::object::{field, field_str, meta_str};
use skiff_api::structural::Schema;
use skiff_api::validation::{dns1123_label_errors, dns1123_subdomain_errors};
use skiff_api::{Cause, ResourceType};

use crate::registry::{Kind, entry_default};

pub static RESOURCE: ResourceType = skiff_api::resource_type!("apiextensions.k8s.io", "v1",
    "CustomResourceDefinition", "customresourcedefinitions", "customresourcedefinition",
    namespaced: false, short: ["crd", "crds"], categories: ["api-extensions"], sub: [Status]);

/// The finalizer a definition's delete adds: its objects are deleted before it.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

/// The printer column types upstream accepts.
const COLUMN_TYPES: &[&str] = &["integer", "number", "string", "boolean", "date"];

pub struct CustomResourceDefinitions;

/// The storage version of a definition: the one version marked `storage: true`.
pub fn storage_version(crd: &Value) -> Option<&str> {
    versions(crd)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
}

pub fn versions(crd: &Value) -> &[Value] {
    field(crd, &["spec", "versions"])
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `status.conditions[type=<kind>]`, set (keeping its transition time when its status
/// did not change).
pub fn set_condition(crd: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    if !crd.get("status").is_some_and(Value::is_object) {
        crd["status"] = json!({});
    }
    let conditions = crd["status"]
        .as_object_mut()
        .expect("made an object")
        .entry("conditions")
        .or_insert_with(|| json!([]));
    if !conditions.is_array() {
        *conditions = json!([]);
    }
    let list = conditions.as_array_mut().expect("made an array");
    let now = skiff_api::object::now_rfc3339();
    match list.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = now.into();
            }
            c["status"] = status.into();
            c["reason"] = reason.into();
            c["message"] = message.into();
        }
        None => list.push(json!({"type": kind, "status": status, "reason": reason,
            "message": message, "lastTransitionTime": now})),
    }
}

impl Kind for CustomResourceDefinitions {
    fn resource(&self) -> &ResourceType {
        &RESOURCE
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
            return;
        };
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            if !kind.is_empty() {
                entry_default(names, "singular", kind.to_lowercase().into());
                entry_default(names, "listKind", format!("{kind}List").into());
            }
        }
        let conversion = spec
            .entry("conversion")
            .or_insert_with(|| json!({"strategy": "None"}));
        if let Some(c) = conversion.as_object_mut() {
            entry_default(c, "strategy", "None".into());
            if c.get("strategy").and_then(Value::as_str) == Some("Webhook")
                && let Some(cfg) = c
                    .get_mut("webhook")
                    .and_then(|w| w.get_mut("clientConfig"))
                    .and_then(|cc| cc.get_mut("service"))
                    .and_then(Value::as_object_mut)
            {
                entry_default(cfg, "port", 443.into());
            }
        }
    }

    /// Upstream's `PrepareForCreate`: no conditions and no accepted names until the
    /// controller judges the names; the storage version is the first stored one.
    fn prepare_for_create(&self, obj: &mut Value) {
        let stored: Vec<Value> = storage_version(obj)
            .map(|v| vec![v.into()])
            .unwrap_or_default();
        obj["status"] = json!({
            "conditions": [],
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": stored,
        });
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = validate_spec(obj);
        if let Some(old) = old {
            for (path, what) in [
                (&["spec", "group"][..], "spec.group"),
                (&["spec", "scope"][..], "spec.scope"),
            ] {
                if field(obj, path) != field(old, path) {
                    causes.push(Cause::invalid(
                        what,
                        field(obj, path).unwrap_or(&Value::Null),
                        "field is immutable",
                    ));
                }
            }
        }
        causes
    }

    fn warnings(&self, obj: &Value) -> Vec<String> {
        if field_str(obj, &["spec", "conversion", "strategy"]) == Some("Webhook") {
            return crate::registry::stored_but(
                obj,
                "CustomResourceDefinition",
                "skiff does not call conversion webhooks yet: its versions are served as if they had the same fields (the None strategy)",
            );
        }
        Vec::new()
    }

    fn deletion_finalizer(&self) -> Option<&'static str> {
        Some(CLEANUP_FINALIZER)
    }

    fn deleting(&self, _state: &crate::state::ApiState, obj: &mut Value) {
        set_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }
}

impl skiff_api::table::Printer for CustomResourceDefinitions {}

fn dns_label_causes(path: &str, value: &str, out: &mut Vec<Cause>) {
    let errors = dns1123_label_errors(value);
    if !errors.is_empty() {
        out.push(Cause::invalid(path, &value.into(), &errors.join("; ")));
    }
}

fn validate_spec(obj: &Value) -> Vec<Cause> {
    let mut out = Vec::new();
    let name = meta_str(obj, "name").unwrap_or_default();
    let group = field_str(obj, &["spec", "group"]).unwrap_or_default();
    let names = field(obj, &["spec", "names"]).cloned().unwrap_or(json!({}));
    let text = |k: &str| names.get(k).and_then(Value::as_str).unwrap_or_default();
    let plural = text("plural");
    if group.is_empty() {
        out.push(Cause::required("spec.group"));
    } else {
        let errors = dns1123_subdomain_errors(group);
        if !errors.is_empty() {
            out.push(Cause::invalid(
                "spec.group",
                &group.into(),
                &errors.join("; "),
            ));
        } else if !group.contains('.') {
            out.push(Cause::invalid(
                "spec.group",
                &group.into(),
                "should be a domain with at least one dot",
            ));
        }
    }
    if !plural.is_empty() && !group.is_empty() && name != format!("{plural}.{group}") {
        out.push(Cause::invalid(
            "metadata.name",
            &name.into(),
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if plural.is_empty() {
        out.push(Cause::required("spec.names.plural"));
    } else {
        dns_label_causes("spec.names.plural", plural, &mut out);
    }
    let singular = text("singular");
    if !singular.is_empty() {
        dns_label_causes("spec.names.singular", singular, &mut out);
    }
    for (key, value) in [("kind", text("kind")), ("listKind", text("listKind"))] {
        if value.is_empty() {
            out.push(Cause::required(format!("spec.names.{key}")));
        } else {
            let lowered = value.to_lowercase();
            if !dns1123_label_errors(&lowered).is_empty() {
                out.push(Cause::invalid(
                    format!("spec.names.{key}"),
                    &value.into(),
                    "may have mixed case, but should otherwise match: [a-z]([-a-z0-9]*[a-z0-9])?",
                ));
            }
        }
    }
    if !text("kind").is_empty() && text("kind") == text("listKind") {
        out.push(Cause::invalid(
            "spec.names.listKind",
            &text("listKind").into(),
            "kind and listKind cannot be the same",
        ));
    }
    for key in ["shortNames", "categories"] {
        for (i, n) in names
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            dns_label_causes(
                &format!("spec.names.{key}[{i}]"),
                n.as_str().unwrap_or_default(),
                &mut out,
            );
        }
    }
    match field_str(obj, &["spec", "scope"]) {
        None | Some("") => out.push(Cause::required("spec.scope")),
        Some("Cluster" | "Namespaced") => {}
        Some(other) => out.push(Cause::not_supported(
            "spec.scope",
            &other.into(),
            &["Cluster", "Namespaced"],
        )),
    }
    match field_str(obj, &["spec", "conversion", "strategy"]) {
        None | Some("None" | "Webhook") => {}
        Some(other) => out.push(Cause::not_supported(
            "spec.conversion.strategy",
            &other.into(),
            &["None", "Webhook"],
        )),
    }
    let versions = super::customresourcedefinition::versions(obj);
    if versions.is_empty() {
        out.push(Cause::invalid(
            "spec.versions",
            &json!([]),
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions
        .iter()
        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .count();
    if !versions.is_empty() && storage != 1 {
        out.push(Cause::invalid(
            "spec.versions",
            &Value::from(versions.len()),
            "must have exactly one version marked as storage version",
        ));
    }
    if !versions.is_empty()
        && !versions
            .iter()
            .any(|v| v.get("served").and_then(Value::as_bool) == Some(true))
    {
        out.push(Cause::invalid(
            "spec.versions",
            &Value::from(versions.len()),
            "must have at least one version marked as served",
        ));
    }
    let mut seen = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        validate_version(v, &format!("spec.versions[{i}]"), &mut seen, &mut out);
    }
    out
}

fn validate_version<'a>(v: &'a Value, at: &str, seen: &mut Vec<&'a str>, out: &mut Vec<Cause>) {
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        out.push(Cause::required(format!("{at}.name")));
    } else {
        dns_label_causes(&format!("{at}.name"), name, out);
        if seen.contains(&name) {
            out.push(Cause::duplicate(format!("{at}.name"), &name.into()));
        }
        seen.push(name);
    }
    let schema_at = format!("{at}.schema.openAPIV3Schema");
    let schema = match v.get("schema").and_then(|s| s.get("openAPIV3Schema")) {
        Some(raw) => match Schema::parse(raw, &schema_at) {
            Ok(s) => {
                if let Err(e) = super::cel::Rules::compile(&s) {
                    out.push(Cause::invalid(
                        format!("{schema_at}.x-kubernetes-validations"),
                        &Value::Null,
                        &e,
                    ));
                }
                Some(s)
            }
            Err(mut causes) => {
                out.append(&mut causes);
                None
            }
        },
        None => {
            out.push(Cause::required_because(schema_at, "schemas are required"));
            None
        }
    };
    if let Some(scale) = v.get("subresources").and_then(|s| s.get("scale")) {
        let scale_at = format!("{at}.subresources.scale");
        for (key, under, required) in [
            ("specReplicasPath", ".spec.", true),
            ("statusReplicasPath", ".status.", true),
            ("labelSelectorPath", "", false),
        ] {
            match scale.get(key).and_then(Value::as_str) {
                None | Some("") if required => {
                    out.push(Cause::required(format!("{scale_at}.{key}")))
                }
                None | Some("") => {}
                Some(path) => {
                    let simple = JsonPath::parse(path)
                        .ok()
                        .and_then(|p| p.fields().map(|f| f.len()));
                    let placed = (under.is_empty()
                        && (path.starts_with(".spec.") || path.starts_with(".status.")))
                        || (!under.is_empty() && path.starts_with(under));
                    if simple.is_none() || !placed {
                        let under = if under.is_empty() {
                            ".spec or .status"
                        } else {
                            under.trim_end_matches('.')
                        };
                        out.push(Cause::invalid(
                            format!("{scale_at}.{key}"),
                            &path.into(),
                            &format!("should be a json path under {under}"),
                        ));
                    } else if key == "specReplicasPath"
                        && let Some(s) = &schema
                        && s.at_path(path).is_none()
                        && !s.preserve_unknown
                    {
                        out.push(Cause::invalid(
                            format!("{scale_at}.{key}"),
                            &path.into(),
                            "should be a valid path to a field in the schema",
                        ));
                    }
                }
            }
        }
    }
    let columns = v.get("additionalPrinterColumns").and_then(Value::as_array);
    for (i, c) in columns.into_iter().flatten().enumerate() {
        let col_at = format!("{at}.additionalPrinterColumns[{i}]");
        let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
        if text("name").is_empty() {
            out.push(Cause::required(format!("{col_at}.name")));
        }
        match text("type") {
            "" => out.push(Cause::required(format!("{col_at}.type"))),
            t if !COLUMN_TYPES.contains(&t) => {
                out.push(Cause::not_supported(
                    format!("{col_at}.type"),
                    &t.into(),
                    COLUMN_TYPES,
                ));
            }
            _ => {}
        }
        match text("jsonPath") {
            "" => out.push(Cause::required(format!("{col_at}.jsonPath"))),
            p => {
                if let Err(e) = JsonPath::parse(p) {
                    out.push(Cause::invalid(
                        format!("{col_at}.jsonPath"),
                        &p.into(),
                        &e.to_string(),
                    ));
                }
            }
        }
    }
    let selectable = v.get("selectableFields").and_then(Value::as_array);
    for (i, f) in selectable.into_iter().flatten().enumerate() {
        let path = f
            .get("jsonPath")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let f_at = format!("{at}.selectableFields[{i}].jsonPath");
        if path.is_empty() {
            out.push(Cause::required(f_at));
        } else if JsonPath::parse(path)
            .ok()
            .and_then(|p| p.fields().map(|_| ()))
            .is_none()
        {
            out.push(Cause::invalid(
                f_at,
                &path.into(),
                "must be a simple path of fields",
            ));
        } else if let Some(s) = &schema
            && !s.preserve_unknown
            && s.at_path(path).is_none()
        {
            out.push(Cause::invalid(
                f_at,
                &path.into(),
                "is an invalid path: does not refer to a field in the schema",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn widget_crd() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
                "versions": [{"name": "v1", "served": true, "storage": true,
                    "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {"replicas": {"type": "integer"}}},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}}}},
                    "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                    "additionalPrinterColumns": [{"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}]}]}
        })
    }

    fn fields(obj: &Value) -> Vec<String> {
        let mut crd = obj.clone();
        CustomResourceDefinitions.default(&mut crd);
        let mut f: Vec<String> = CustomResourceDefinitions
            .validate(&crd, None)
            .into_iter()
            .map(|c| c.field)
            .collect();
        f.sort();
        f
    }

    #[test]
    fn a_good_definition_is_defaulted_and_valid() {
        let mut crd = widget_crd();
        CustomResourceDefinitions.default(&mut crd);
        assert_eq!(crd["spec"]["names"]["singular"], "widget");
        assert_eq!(crd["spec"]["names"]["listKind"], "WidgetList");
        assert_eq!(crd["spec"]["conversion"]["strategy"], "None");
        assert!(CustomResourceDefinitions.validate(&crd, None).is_empty());
        CustomResourceDefinitions.prepare_for_create(&mut crd);
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    }

    #[test]
    fn bad_definitions_name_their_fields() {
        let mut crd = widget_crd();
        crd["metadata"]["name"] = json!("gadgets.example.com");
        crd["spec"]["scope"] = json!("Global");
        crd["spec"]["versions"][0]["storage"] = json!(false);
        crd["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
            json!(".status.replicas");
        crd["spec"]["versions"][0]["additionalPrinterColumns"][0]["type"] = json!("float");
        assert_eq!(
            fields(&crd),
            [
                "metadata.name",
                "spec.scope",
                "spec.versions",
                "spec.versions[0].additionalPrinterColumns[0].type",
                "spec.versions[0].subresources.scale.specReplicasPath",
            ]
        );
        let mut crd = widget_crd();
        crd["spec"]["group"] = json!("example");
        crd["metadata"]["name"] = json!("widgets.example");
        crd["spec"]["versions"][0]["schema"] = json!({});
        assert_eq!(
            fields(&crd),
            ["spec.group", "spec.versions[0].schema.openAPIV3Schema"]
        );
        let mut old = widget_crd();
        CustomResourceDefinitions.default(&mut old);
        let mut changed = old.clone();
        changed["spec"]["scope"] = json!("Cluster");
        let causes = CustomResourceDefinitions.validate(&changed, Some(&old));
        assert_eq!(
            causes[0].message,
            "spec.scope: Invalid value: \"Cluster\": field is immutable"
        );
    }
}

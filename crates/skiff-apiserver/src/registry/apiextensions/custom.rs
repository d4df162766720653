//! One served version of a custom resource: a [`Kind`] made at run time from a
//! CustomResourceDefinition, so custom objects go through the same write path as built-in
//! ones — structural defaults, pruning of unknown fields (which `fieldValidation` reports),
//! schema and CEL validation, the status and scale subresources, printer columns and
//! selectable fields.
//!
//! Invariants: every version of one definition shares its storage (`plural.group`), and
//! objects are written in the storage version (`ResourceType::stored_version`; the `None`
//! conversion strategy changes only apiVersion). Everything is parsed here, once per
//! definition change; a request only evaluates.

use std::hash::{Hash, Hasher};

use serde_json::Value;
use skiff_api::intern;
use skiff_api::jsonpath::JsonPath;
use skiff_api::object::{meta_str, string_list};
use skiff_api::resources::{CRUD_VERBS, ResourceType, Subresource};
use skiff_api::structural::Schema;
use skiff_api::table::{Column, NAME, Printer, Timed, text, time_of};
use skiff_api::{ApiError, Cause};
use time::OffsetDateTime;

use super::cel::Rules;
use super::customresourcedefinition::storage_version;
use crate::registry::{Kind, Pending, ScalePaths, ScaleSelector};
use crate::state::ApiState;

/// One `additionalPrinterColumns` entry, parsed.
struct PrinterColumn {
    column: Column,
    path: JsonPath,
}

pub struct CustomKind {
    rt: ResourceType,
    hash: u64,
    schema: Option<Schema>,
    raw_schema: Option<Value>,
    rules: Rules,
    columns: Vec<PrinterColumn>,
    scale: Option<ScalePaths>,
    selectable: &'static [&'static str],
    /// The definition is being deleted: no new objects.
    terminating: bool,
}

/// The subresource sets a custom resource can have.
const SUBRESOURCES: [&[Subresource]; 4] = [
    &[],
    &[Subresource::Status],
    &[Subresource::Scale],
    &[Subresource::Scale, Subresource::Status],
];

fn field_path(path: &str) -> Option<&'static [&'static str]> {
    let parsed = JsonPath::parse(path).ok()?;
    Some(intern::strs(&parsed.fields()?))
}

impl CustomKind {
    /// The kinds a definition serves: one per served version, preferred version first,
    /// under the names the controller accepted (`status.acceptedNames`).
    pub fn from_definition(crd: &Value) -> Result<Vec<CustomKind>, String> {
        served_versions(crd)
            .into_iter()
            .map(|v| CustomKind::of_version(crd, v))
            .collect()
    }

    /// The hashes of the kinds [`CustomKind::from_definition`] would make, in the same
    /// order, without making them (no schema parsed, no rule compiled): what tells an
    /// unchanged definition from a changed one.
    pub fn definition_hashes(crd: &Value) -> Vec<u64> {
        served_versions(crd)
            .into_iter()
            .map(|v| version_hash(crd, v))
            .collect()
    }

    fn of_version(crd: &Value, version: &Value) -> Result<CustomKind, String> {
        let spec = &crd["spec"];
        let names = &crd["status"]["acceptedNames"];
        let name_of = |k: &str| names.get(k).and_then(Value::as_str).unwrap_or_default();
        let group = spec["group"].as_str().unwrap_or_default();
        let version_name = version["name"].as_str().unwrap_or_default();
        let subresources = version.get("subresources");
        let has = |s: &str| subresources.and_then(|r| r.get(s)).is_some();
        let scale_spec = subresources.and_then(|r| r.get("scale"));
        let scale = match scale_spec {
            Some(s) => Some(ScalePaths {
                spec_replicas: field_path(s["specReplicasPath"].as_str().unwrap_or_default())
                    .ok_or("the scale subresource's specReplicasPath is not a path of fields")?,
                status_replicas: field_path(s["statusReplicasPath"].as_str().unwrap_or_default())
                    .ok_or(
                    "the scale subresource's statusReplicasPath is not a path of fields",
                )?,
                selector: match s.get("labelSelectorPath").and_then(Value::as_str) {
                    Some(p) => ScaleSelector::Text(
                        field_path(p).ok_or("labelSelectorPath is not a path of fields")?,
                    ),
                    None => ScaleSelector::None,
                },
            }),
            None => None,
        };
        let subs = SUBRESOURCES[usize::from(scale.is_some()) * 2 + usize::from(has("status"))];
        let stored = storage_version(crd).unwrap_or(version_name);
        let rt = ResourceType {
            group: intern::str(group),
            version: intern::str(version_name),
            kind: intern::str(name_of("kind")),
            plural: intern::str(name_of("plural")),
            singular: intern::str(name_of("singular")),
            namespaced: spec["scope"] == "Namespaced",
            short_names: intern::strs(&string_list(names.get("shortNames"))),
            categories: intern::strs(&string_list(names.get("categories"))),
            subresources: subs,
            verbs: CRUD_VERBS,
            storage: "",
            stored_version: intern::str(&format!("{group}/{stored}")),
        };
        let raw_schema = version
            .get("schema")
            .and_then(|s| s.get("openAPIV3Schema"))
            .cloned();
        let schema = match &raw_schema {
            Some(raw) => Some(
                Schema::parse(raw, "openAPIV3Schema")
                    .map_err(|c| format!("its schema is not structural: {}", c[0].message))?,
            ),
            None => None,
        };
        let rules = match &schema {
            Some(s) => Rules::compile(s)?,
            None => Rules::default(),
        };
        let columns = printer_columns(version)?;
        let selectable: Vec<String> = version
            .get("selectableFields")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|f| f.get("jsonPath").and_then(Value::as_str))
            .map(|p| p.trim_start_matches('.').to_string())
            .collect();
        let terminating = meta_str(crd, "deletionTimestamp").is_some();
        Ok(CustomKind {
            rt,
            hash: version_hash(crd, version),
            schema,
            raw_schema,
            rules,
            columns,
            scale,
            selectable: intern::strs(&selectable),
            terminating,
        })
    }

    fn validate_schema(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let mut causes = Vec::new();
        if let Some(schema) = &self.schema {
            schema.validate(obj, "", &mut causes);
            // CEL rules see only values the schema accepted (upstream's order).
            if causes.is_empty() {
                self.rules.check(schema, obj, old, &mut causes);
            }
        }
        causes.sort_by(|a, b| a.field.cmp(&b.field));
        causes
    }
}

/// A definition's served versions, preferred first.
fn served_versions(crd: &Value) -> Vec<&Value> {
    let mut served: Vec<&Value> = super::customresourcedefinition::versions(crd)
        .iter()
        .filter(|v| v.get("served").and_then(Value::as_bool) == Some(true))
        .collect();
    served.sort_by(|a, b| {
        super::version_order(
            a["name"].as_str().unwrap_or_default(),
            b["name"].as_str().unwrap_or_default(),
        )
    });
    served
}

/// What one served version's kind is made of: the version, the accepted names, the scope,
/// the storage version and whether the definition is terminating.
fn version_hash(crd: &Value, version: &Value) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    version.to_string().hash(&mut h);
    crd["status"]["acceptedNames"].to_string().hash(&mut h);
    crd["spec"]["scope"].to_string().hash(&mut h);
    storage_version(crd).hash(&mut h);
    meta_str(crd, "deletionTimestamp").is_some().hash(&mut h);
    h.finish()
}

fn printer_columns(version: &Value) -> Result<Vec<PrinterColumn>, String> {
    let declared = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    // Upstream's logical default: a definition without columns prints its age.
    let declared = if declared.is_empty() {
        vec![
            serde_json::json!({"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp",
            "description": "CreationTimestamp is a timestamp representing the server time when this object was created."}),
        ]
    } else {
        declared
    };
    declared
        .iter()
        .map(|c| {
            let text = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
            let path = JsonPath::parse(text("jsonPath")).map_err(|e| e.to_string())?;
            let priority = c.get("priority").and_then(Value::as_u64).unwrap_or(0);
            Ok(PrinterColumn {
                column: Column(
                    intern::str(text("name")),
                    intern::str(text("type")),
                    intern::str(text("format")),
                    u8::try_from(priority).unwrap_or(u8::MAX),
                    intern::str(text("description")),
                ),
                path,
            })
        })
        .collect()
}

impl Printer for CustomKind {
    fn columns(&self) -> Vec<Column> {
        std::iter::once(NAME)
            .chain(self.columns.iter().map(|c| c.column))
            .collect()
    }

    fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
        let mut cells = vec![text(meta_str(obj, "name"))];
        for c in &self.columns {
            let found = c.path.find(obj);
            let cell = match found.as_slice() {
                [] => Value::Null,
                [one] if c.column.1 == "date" => {
                    Value::String(skiff_api::object::age(one.as_str(), now))
                }
                [one] => (*one).clone(),
                many => Value::String(
                    many.iter()
                        .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                        .collect::<Vec<_>>()
                        .join(" "),
                ),
            };
            cells.push(cell);
        }
        cells
    }

    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        let c = self
            .columns
            .iter()
            .find(|c| c.column.0 == column && c.column.1 == "date")?;
        let at = c.path.find(obj).first().and_then(|v| v.as_str());
        Some(Timed::Age(time_of(at)))
    }
}

impl Kind for CustomKind {
    fn resource(&self) -> &ResourceType {
        &self.rt
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn default(&self, obj: &mut Value) {
        if let Some(schema) = &self.schema {
            schema.apply_defaults(obj);
        }
    }

    fn admit<'a>(
        &'a self,
        _state: &'a ApiState,
        _user: &'a crate::authn::UserInfo,
        _obj: &'a mut Value,
    ) -> Pending<'a, ()> {
        let refused = self.terminating.then(|| {
            ApiError::new(
                405,
                "MethodNotAllowed",
                "create not allowed while custom resource definition is terminating",
            )
        });
        Box::pin(async move { refused.map_or(Ok(()), Err) })
    }

    fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        self.validate_schema(obj, old)
    }

    fn validate_subresource(
        &self,
        subresource: Subresource,
        new: &Value,
        old: &Value,
    ) -> Vec<Cause> {
        match subresource {
            Subresource::Status => self.validate_schema(new, Some(old)),
            _ => Vec::new(),
        }
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        self.selectable
    }

    fn openapi_schema(&self) -> Option<Value> {
        Some(self.raw_schema.clone().unwrap_or_else(
            || serde_json::json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
        ))
    }

    fn prune_unknown(&self, obj: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        if let Some(schema) = &self.schema
            && !schema.preserve_unknown
        {
            schema.prune(obj, "", true, &mut unknown);
        }
        unknown
    }

    fn field_types(&self) -> skiff_api::field_types::TypeNode<'_> {
        match &self.schema {
            Some(schema) => skiff_api::field_types::TypeNode::Schema(schema),
            None => skiff_api::field_types::TypeNode::Unknown,
        }
    }

    fn scale_paths(&self) -> ScalePaths {
        self.scale.unwrap_or(ScalePaths::WORKLOAD)
    }

    fn definition_hash(&self) -> Option<u64> {
        Some(self.hash)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn established() -> Value {
        let mut crd = json!({
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "scope": "Namespaced",
                "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList", "shortNames": ["wd"]},
                "versions": [
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                        "spec": {"type": "object", "properties": {
                            "replicas": {"type": "integer", "maximum": 10, "default": 1},
                            "color": {"type": "string"}}},
                        "status": {"type": "object", "properties": {"replicas": {"type": "integer"}, "selector": {"type": "string"}}}}}},
                     "subresources": {"status": {}, "scale": {"specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas", "labelSelectorPath": ".status.selector"}},
                     "selectableFields": [{"jsonPath": ".spec.color"}],
                     "additionalPrinterColumns": [
                        {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]},
                    {"name": "v2", "served": true, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}},
                    {"name": "v0", "served": false, "storage": false,
                     "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        });
        crd["status"]["acceptedNames"] = crd["spec"]["names"].clone();
        crd
    }

    #[test]
    fn each_served_version_is_a_kind_preferred_first() {
        let kinds = CustomKind::from_definition(&established()).unwrap();
        let versions: Vec<&str> = kinds.iter().map(|k| k.resource().version).collect();
        assert_eq!(versions, ["v2", "v1"]);
        let v1 = &kinds[1];
        let rt = v1.resource();
        assert_eq!(
            (rt.group, rt.kind, rt.plural, rt.short_names),
            ("example.com", "Widget", "widgets", &["wd"][..])
        );
        assert_eq!(rt.subresources, &[Subresource::Scale, Subresource::Status]);
        assert_eq!(rt.storage_prefix(), "/widgets.example.com/");
        assert_eq!(kinds[0].resource().stored_version, "example.com/v1");
        assert_eq!(v1.selectable_fields(), ["spec.color"]);
        assert_ne!(kinds[0].definition_hash(), v1.definition_hash());
        assert_eq!(
            CustomKind::from_definition(&established()).unwrap()[1].definition_hash(),
            v1.definition_hash()
        );
    }

    #[test]
    fn objects_are_defaulted_pruned_validated_and_printed() {
        let kinds = CustomKind::from_definition(&established()).unwrap();
        let v1 = &kinds[1];
        let mut w = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "metadata": {"name": "w", "creationTimestamp": "2026-12-07T10:00:00Z"},
            "spec": {"color": "red", "size": 3}});
        assert_eq!(v1.prune_unknown(&mut w), ["spec.size"]);
        v1.default(&mut w);
        assert_eq!(w["spec"]["replicas"], 1);
        assert!(v1.validate(&w, None).is_empty());
        w["spec"]["replicas"] = json!(11);
        assert_eq!(
            v1.validate(&w, None)[0].message,
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"
        );
        let now = OffsetDateTime::parse(
            "2026-12-07T10:05:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let names: Vec<&str> = v1.columns().iter().map(|c| c.0).collect();
        assert_eq!(names, ["Name", "Replicas", "Age"]);
        assert_eq!(v1.cells(&w, now), [json!("w"), json!(11), json!("5m")]);
        assert!(matches!(v1.timed("Age", &w), Some(Timed::Age(Some(_)))));
        let v2 = &kinds[0];
        assert_eq!(
            v2.columns().iter().map(|c| c.0).collect::<Vec<_>>(),
            ["Name", "Age"]
        );
        let mut anything = json!({"spec": {"whatever": 1}});
        assert!(v2.prune_unknown(&mut anything).is_empty());
        assert!(matches!(
            v1.scale_paths().selector,
            ScaleSelector::Text(["status", "selector"])
        ));
    }
}

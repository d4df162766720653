//! Field ownership (`metadata.managedFields`) and server-side apply.
//!
//! A field set is upstream's FieldsV1 tree: `f:<field>` for struct and map fields,
//! `k:{"name":"web"}` for elements of lists merged by key, `v:<value>` for elements of sets,
//! and `.` for owning an element (or map) itself; leaves are `{}`. Lists without a merge
//! strategy are atomic: the list field is one leaf. List semantics come from the type schema
//! and the patch strategies ([`crate::strategic`]).
//!
//! Every write records what it changed under its field manager (operation `Update`, or
//! `Apply` for server-side apply); a field changed by one manager leaves the sets of the
//! others. Apply conflicts when it would change a value another manager owns, unless forced,
//! and removes the fields its manager applied before and no longer does (when nobody else
//! owns them).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::field_types::{ListStrategy, TypeNode};

/// A set of field paths, as a FieldsV1 tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet(BTreeMap<String, FieldSet>);

/// Top-level fields no manager owns (status is owned through the status subresource).
const SYSTEM_FIELDS: &[&str] = &["apiVersion", "kind"];

/// Which part of an object a write may own: everything but status (the main resource), or
/// only status (the status subresource).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Main,
    Status,
}

impl Scope {
    /// The scope of a write through `subresource` (`status`, or none).
    pub fn of(subresource: Option<&str>) -> Scope {
        if subresource == Some("status") {
            Scope::Status
        } else {
            Scope::Main
        }
    }

    fn includes(self, top_level_key: &str) -> bool {
        match self {
            Scope::Main => top_level_key != "status",
            Scope::Status => top_level_key == "status",
        }
    }
}
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
];

/// Struct types upstream marks `+structType=atomic`: owned as a whole.
pub(crate) fn atomic_struct(message: &str) -> bool {
    matches!(
        message,
        ".apimachinery.pkg.apis.meta.v1.LabelSelector" | ".api.core.v1.NodeSelector"
    )
}

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The FieldsV1 JSON form.
    pub fn to_json(&self) -> Value {
        Value::Object(
            self.0
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }

    pub fn from_json(v: &Value) -> FieldSet {
        FieldSet(
            v.as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| (k.clone(), FieldSet::from_json(v)))
                        .collect()
                })
                .unwrap_or_default(),
        )
    }

    fn insert(&mut self, path: &[String]) {
        if let Some((first, rest)) = path.split_first() {
            self.0.entry(first.clone()).or_default().insert(rest);
        }
    }

    /// Every leaf path (a path whose node has no children).
    pub fn leaves(&self) -> Vec<Vec<String>> {
        let mut out = Vec::new();
        for (k, v) in &self.0 {
            if v.0.is_empty() {
                out.push(vec![k.clone()]);
            } else {
                for mut rest in v.leaves() {
                    rest.insert(0, k.clone());
                    out.push(rest);
                }
            }
        }
        out
    }

    pub fn contains(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => true,
            Some((first, rest)) => self.0.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for leaf in other.leaves() {
            out.insert(&leaf);
        }
        out
    }

    /// The leaves of `self` that `other` does not have.
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for leaf in self.leaves() {
            if !other.contains_leaf(&leaf) {
                out.insert(&leaf);
            }
        }
        out
    }

    fn contains_leaf(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => self.0.is_empty(),
            Some((first, rest)) => self.0.get(first).is_some_and(|c| c.contains_leaf(rest)),
        }
    }
}

/// The path element for a list element merged by `keys` (upstream's `k:{"name":"web"}`).
fn key_element(item: &Value, keys: &[&str]) -> Option<String> {
    let mut id = Map::new();
    for key in keys {
        id.insert((*key).to_string(), item.get(*key)?.clone());
    }
    Some(format!("k:{}", Value::Object(id)))
}

fn set_element(item: &Value) -> String {
    format!("v:{item}")
}

/// Every field an object (or applied configuration) sets, as a field set — or, given the
/// previous version of the same object (`old`), only the fields whose values it changed.
/// `message` is the object's type ("" when unknown: then nested objects are maps and lists
/// atomic).
///
/// Walking both versions together lets a write skip every subtree it left equal, which is
/// most of an object on a status update or a binding; it finds the same fields as comparing
/// the two whole field sets leaf by leaf. `None` means the subtree has no previous version:
/// every field under it counts.
fn collect(
    node: &TypeNode<'_>,
    obj: &Map<String, Value>,
    old: Option<&Map<String, Value>>,
    scope: Scope,
    path: &mut Vec<String>,
    out: &mut FieldSet,
) {
    for (key, value) in obj {
        if path.is_empty() && (SYSTEM_FIELDS.contains(&key.as_str()) || !scope.includes(key)) {
            continue;
        }
        if path.len() == 1 && path[0] == "f:metadata" && SYSTEM_METADATA.contains(&key.as_str()) {
            continue;
        }
        let previous = old.and_then(|o| o.get(key));
        if previous == Some(value) {
            continue;
        }
        path.push(format!("f:{key}"));
        let child = node.field(key);
        let is_map = node.is_map_field(key);
        match value {
            Value::Object(m) if is_map => {
                path.push(".".into());
                out.insert(path);
                path.pop();
                let previous = previous.and_then(Value::as_object);
                for (k, v) in m {
                    if previous.and_then(|p| p.get(k)) != Some(v) {
                        path.push(format!("f:{k}"));
                        out.insert(path);
                        path.pop();
                    }
                }
            }
            Value::Object(m) if !m.is_empty() && !child.is_atomic() => {
                collect(
                    &child,
                    m,
                    previous.and_then(Value::as_object),
                    scope,
                    path,
                    out,
                );
            }
            Value::Array(items) => {
                let previous = previous.and_then(Value::as_array);
                match node.list_strategy(key) {
                    ListStrategy::MergeByKey(keys) => {
                        for item in items {
                            let Some(element) = key_element(item, keys) else {
                                continue;
                            };
                            let before = previous.and_then(|p| {
                                // `item` has the key (it has an element name).
                                p.iter()
                                    .find(|old| keys.iter().all(|k| old.get(*k) == item.get(*k)))
                            });
                            if before == Some(item) {
                                continue;
                            }
                            path.push(element);
                            path.push(".".into());
                            out.insert(path);
                            path.pop();
                            if let Value::Object(m) = item {
                                let before = before.and_then(Value::as_object);
                                collect(&child, m, before, scope, path, out);
                            }
                            path.pop();
                        }
                    }
                    ListStrategy::MergeScalars => {
                        for item in items {
                            if previous.is_some_and(|p| p.contains(item)) {
                                continue;
                            }
                            path.push(set_element(item));
                            out.insert(path);
                            path.pop();
                        }
                    }
                    ListStrategy::Replace => out.insert(path),
                }
            }
            _ => out.insert(path),
        }
        path.pop();
    }
}

/// The fields an object of the built-in `apiVersion`/`kind` sets, within a scope.
pub fn fields_of(api_version: &str, kind: &str, obj: &Value, scope: Scope) -> FieldSet {
    fields_of_typed(&TypeNode::of(api_version, kind), obj, scope)
}

/// The fields an object of `types` sets, within a scope.
pub fn fields_of_typed(types: &TypeNode<'_>, obj: &Value, scope: Scope) -> FieldSet {
    walk(types, obj, None, scope)
}

/// [`collect`] from the top of an object (and of its previous version, if given).
fn walk(types: &TypeNode<'_>, obj: &Value, old: Option<&Value>, scope: Scope) -> FieldSet {
    let mut out = FieldSet::default();
    if let Value::Object(m) = obj {
        let old = old.and_then(Value::as_object);
        collect(types, m, old, scope, &mut Vec::new(), &mut out);
    }
    out
}

/// The value at a field path, if the object has it.
fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(obj);
    };
    if first == "." {
        return Some(obj);
    }
    let next = if let Some(f) = first.strip_prefix("f:") {
        obj.get(f)?
    } else if let Some(k) = first.strip_prefix("k:") {
        let key: Map<String, Value> = serde_json::from_str(k).ok()?;
        obj.as_array()?
            .iter()
            .find(|item| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv)))?
    } else if let Some(v) = first.strip_prefix("v:") {
        let value: Value = serde_json::from_str(v).ok()?;
        obj.as_array()?.iter().find(|item| **item == value)?
    } else {
        return None;
    };
    value_at(next, rest)
}

/// Removes the field at a path (an element or map entry for `.` paths).
fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((first, rest)) = path.split_first() else {
        return;
    };
    let last = rest.is_empty() || rest == ["."];
    if let Some(f) = first.strip_prefix("f:") {
        let Some(map) = obj.as_object_mut() else {
            return;
        };
        if last {
            map.remove(f);
        } else if let Some(child) = map.get_mut(f) {
            remove_at(child, rest);
        }
    } else if let Some(k) = first.strip_prefix("k:") {
        let Ok(key) = serde_json::from_str::<Map<String, Value>>(k) else {
            return;
        };
        let Some(items) = obj.as_array_mut() else {
            return;
        };
        let matches = |item: &Value| key.iter().all(|(kk, kv)| item.get(kk) == Some(kv));
        if last {
            items.retain(|i| !matches(i));
        } else if let Some(item) = items.iter_mut().find(|i| matches(i)) {
            remove_at(item, rest);
        }
    } else if let Some(v) = first.strip_prefix("v:") {
        let Ok(value) = serde_json::from_str::<Value>(v) else {
            return;
        };
        if let Some(items) = obj.as_array_mut() {
            items.retain(|i| *i != value);
        }
    }
}

/// The fields whose values differ between two versions of an object (added or changed), as
/// a field set.
pub fn changed_fields(
    api_version: &str,
    kind: &str,
    old: &Value,
    new: &Value,
    scope: Scope,
) -> FieldSet {
    changed_fields_typed(&TypeNode::of(api_version, kind), old, new, scope)
}

/// As [`changed_fields`], for an object of `types`.
pub fn changed_fields_typed(
    types: &TypeNode<'_>,
    old: &Value,
    new: &Value,
    scope: Scope,
) -> FieldSet {
    walk(types, new, Some(old), scope)
}

/// One `managedFields` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": self.fields.to_json(),
        });
        if let Some(s) = &self.subresource {
            v["subresource"] = s.clone().into();
        }
        v
    }

    fn from_json(v: &Value) -> Option<Entry> {
        Some(Entry {
            manager: v.get("manager")?.as_str()?.to_string(),
            operation: v.get("operation")?.as_str()?.to_string(),
            api_version: v
                .get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            time: v
                .get("time")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            subresource: v
                .get("subresource")
                .and_then(Value::as_str)
                .map(str::to_string),
            fields: FieldSet::from_json(v.get("fieldsV1").unwrap_or(&Value::Null)),
        })
    }
}

/// An object's `managedFields`.
pub fn read(obj: &Value) -> Vec<Entry> {
    obj.get("metadata")
        .and_then(|m| m.get("managedFields"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Entry::from_json).collect())
        .unwrap_or_default()
}

/// Replaces an object's `managedFields` (dropping entries that own nothing).
pub fn write(obj: &mut Value, entries: &[Entry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(Entry::to_json)
        .collect();
    let meta = crate::object::metadata_mut(obj);
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Records a non-apply write: `changed` now belongs to `manager` (operation `Update`) and
/// to nobody else.
pub fn record_update(
    entries: &mut Vec<Entry>,
    manager: &str,
    api_version: &str,
    subresource: Option<&str>,
    changed: &FieldSet,
    now: &str,
) {
    if changed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        e.fields = e.fields.difference(changed);
    }
    let subresource = subresource.map(str::to_string);
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(e) => {
            e.fields = e.fields.union(changed);
            e.time = now.to_string();
            e.api_version = api_version.to_string();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource,
            fields: changed.clone(),
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
}

/// A field another manager owns with a different value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub api_version: String,
    /// `.spec.replicas`, `.spec.template.spec.containers[name="web"].image`.
    pub field: String,
    /// The field's path in a field set (`f:spec`, `f:replicas`).
    pub path: Vec<String>,
}

/// Where kubectl's client-side apply keeps the configuration it last applied.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The field manager of `kubectl apply --server-side`, the one the upgrade below is for.
const KUBECTL_SERVER_SIDE: &str = "kubectl";

/// Upstream's upgrade from client-side to server-side apply (its `lastAppliedManager`):
/// `kubectl apply --server-side` on an object last applied client-side conflicts with
/// `kubectl-client-side-apply` on every field whose value it changes. When every
/// conflicting field is one the last client-side apply set (its annotation on `live`), the
/// apply is forced instead, and those fields move to the server-side manager — the
/// documented migration path. Other managers keep their conflicts.
pub fn allowed_by_last_applied(
    api_version: &str,
    kind: &str,
    live: &Value,
    manager: &str,
    conflicts: &[Conflict],
) -> bool {
    allowed_by_last_applied_typed(&TypeNode::of(api_version, kind), live, manager, conflicts)
}

/// As [`allowed_by_last_applied`], for an object of `types`.
pub fn allowed_by_last_applied_typed(
    types: &TypeNode<'_>,
    live: &Value,
    manager: &str,
    conflicts: &[Conflict],
) -> bool {
    if manager != KUBECTL_SERVER_SIDE || conflicts.iter().any(|c| c.manager.is_empty()) {
        return false;
    }
    let Some(last_applied) = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(LAST_APPLIED_ANNOTATION))
        .and_then(Value::as_str)
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
    else {
        return false;
    };
    let allowed = fields_of_typed(types, &last_applied, Scope::Main);
    conflicts.iter().all(|c| allowed.contains_leaf(&c.path))
}

/// Upstream's rendering of a field path in conflict messages.
fn display_path(path: &[String]) -> String {
    let mut out = String::new();
    for p in path {
        if let Some(f) = p.strip_prefix("f:") {
            out.push('.');
            out.push_str(f);
        } else if let Some(k) = p.strip_prefix("k:") {
            let key: Map<String, Value> = serde_json::from_str(k).unwrap_or_default();
            let parts: Vec<String> = key.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out.push_str(&format!("[{}]", parts.join(",")));
        } else if let Some(v) = p.strip_prefix("v:") {
            out.push_str(&format!("[={v}]"));
        }
    }
    out
}

/// Server-side apply of `applied` (from `manager`) onto `live`, an object of the built-in
/// `apiVersion`/`kind`: answers the new object (managedFields included), or the conflicts
/// when not forced.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    api_version: &str,
    kind: &str,
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let types = TypeNode::of(api_version, kind);
    apply_typed(
        api_version,
        &types,
        live,
        applied,
        manager,
        subresource,
        force,
        now,
    )
}

/// As [`apply`], for an object of `types` (a custom resource's schema, say).
#[allow(clippy::too_many_arguments)]
pub fn apply_typed(
    api_version: &str,
    types: &TypeNode<'_>,
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: Option<&str>,
    force: bool,
    now: &str,
) -> Result<Value, Vec<Conflict>> {
    let mut entries = read(live);
    let scope = Scope::of(subresource);
    let applied_set = fields_of_typed(types, applied, scope);
    let subresource = subresource.map(str::to_string);
    let is_mine =
        |e: &Entry| e.manager == manager && e.operation == "Apply" && e.subresource == subresource;
    let previous = entries
        .iter()
        .find(|e| is_mine(e))
        .map(|e| e.fields.clone())
        .unwrap_or_default();

    let mut conflicts = Vec::new();
    for leaf in applied_set.leaves() {
        if leaf.last().map(String::as_str) == Some(".") {
            continue;
        }
        if value_at(live, &leaf) == value_at(applied, &leaf) {
            continue;
        }
        for e in &entries {
            let mine = is_mine(e);
            if !mine && e.fields.contains_leaf(&leaf) {
                conflicts.push((e.manager.clone(), e.api_version.clone(), leaf.clone()));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflicts
            .into_iter()
            .map(|(manager, api_version, path)| Conflict {
                manager,
                api_version,
                field: display_path(&path),
                path,
            })
            .collect());
    }

    // Taken by force, or changed by this apply: nobody else owns those values now. Fields
    // applied with the value they already had stay shared.
    for e in entries.iter_mut() {
        if is_mine(e) {
            continue;
        }
        let taken: FieldSet = {
            let mut t = FieldSet::default();
            for leaf in applied_set.leaves() {
                if e.fields.contains_leaf(&leaf)
                    && value_at(live, &leaf) != value_at(applied, &leaf)
                {
                    t.insert(&leaf);
                }
            }
            t
        };
        e.fields = e.fields.difference(&taken);
    }

    let mut merged = live.clone();
    let mut config = applied.clone();
    if let Some(m) = config.as_object_mut() {
        m.retain(|k, _| {
            !SYSTEM_FIELDS.contains(&k.as_str()) && (k == "metadata" || scope.includes(k))
        });
    }
    if let Some(meta) = config.get_mut("metadata").and_then(Value::as_object_mut) {
        for f in SYSTEM_METADATA {
            meta.remove(*f);
        }
    }
    crate::strategic::merge_typed(types, &mut merged, &config).map_err(|e| {
        vec![Conflict {
            manager: String::new(),
            api_version: String::new(),
            field: e.to_string(),
            path: Vec::new(),
        }]
    })?;

    // What this manager applied before and no longer does, and nobody else owns, goes.
    let others = entries
        .iter()
        .filter(|e| !is_mine(e))
        .fold(FieldSet::default(), |acc, e| acc.union(&e.fields));
    for leaf in previous.difference(&applied_set).leaves() {
        // A map or element owned as a whole stays while others own parts of it.
        let shared = match leaf.split_last() {
            Some((last, parent)) if last == "." => others.contains(parent),
            _ => others.contains_leaf(&leaf),
        };
        if !shared {
            remove_at(&mut merged, &leaf);
        }
    }

    entries.retain(|e| !is_mine(e));
    entries.push(Entry {
        manager: manager.to_string(),
        operation: "Apply".into(),
        api_version: api_version.to_string(),
        time: now.to_string(),
        subresource,
        fields: applied_set,
    });
    write(&mut merged, &entries);
    Ok(merged)
}

/// The message of a failed apply, as upstream words it.
pub fn conflict_message(conflicts: &[Conflict]) -> String {
    let n = conflicts.len();
    let list: Vec<String> = conflicts
        .iter()
        .map(|c| {
            format!(
                "conflict with \"{}\" using {}: {}",
                c.manager, c.api_version, c.field
            )
        })
        .collect();
    format!(
        "Apply failed with {n} conflict{}: {}",
        if n == 1 { "" } else { "s" },
        list.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": "web", "labels": {"app": "web"}},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}},
                                     "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}]}]}}}})
    }

    #[test]
    fn kubectl_server_side_takes_over_what_client_side_apply_set() {
        // `kubectl apply` (client-side) made the object: kubectl-client-side-apply owns
        // what it set, and the annotation records the configuration.
        let configured = deployment(2, "web:v1");
        let mut live = configured.clone();
        live["metadata"]["annotations"] = json!({LAST_APPLIED_ANNOTATION: configured.to_string()});
        let mut entries = Vec::new();
        let set = fields_of("apps/v1", "Deployment", &configured, Scope::Main);
        record_update(
            &mut entries,
            "kubectl-client-side-apply",
            "apps/v1",
            None,
            &set,
            "t0",
        );
        write(&mut live, &entries);

        let changed = deployment(3, "web:v1");
        let conflicts = apply(
            "apps/v1",
            "Deployment",
            &live,
            &changed,
            "kubectl",
            None,
            false,
            "t1",
        )
        .unwrap_err();
        assert_eq!(conflicts[0].field, ".spec.replicas");
        assert!(allowed_by_last_applied(
            "apps/v1",
            "Deployment",
            &live,
            "kubectl",
            &conflicts
        ));
        // Only for kubectl's own server-side manager, and only with the annotation.
        assert!(!allowed_by_last_applied(
            "apps/v1",
            "Deployment",
            &live,
            "helm",
            &conflicts
        ));
        let mut bare = live.clone();
        bare["metadata"]["annotations"] = json!({});
        assert!(!allowed_by_last_applied(
            "apps/v1",
            "Deployment",
            &bare,
            "kubectl",
            &conflicts
        ));
        // A field the last client-side apply did not set stays a conflict.
        let mut other = conflicts.clone();
        other[0].path = vec!["f:spec".into(), "f:paused".into()];
        assert!(!allowed_by_last_applied(
            "apps/v1",
            "Deployment",
            &live,
            "kubectl",
            &other
        ));
    }

    #[test]
    fn field_sets_use_upstream_path_elements() {
        let set = fields_of(
            "apps/v1",
            "Deployment",
            &deployment(2, "web:v1"),
            Scope::Main,
        )
        .to_json();
        assert_eq!(set["f:metadata"]["f:labels"], json!({".": {}, "f:app": {}}));
        assert_eq!(
            set["f:spec"]["f:selector"],
            json!({}),
            "LabelSelector is atomic"
        );
        let c = &set["f:spec"]["f:template"]["f:spec"]["f:containers"][r#"k:{"name":"web"}"#];
        assert_eq!(c["."], json!({}));
        assert_eq!(c["f:image"], json!({}));
        assert!(c["f:ports"].get(r#"k:{"containerPort":80}"#).is_some());
        assert!(
            set["f:metadata"].get("f:name").is_none(),
            "system fields belong to nobody"
        );
    }

    #[test]
    fn apply_conflicts_with_other_owners_unless_forced() {
        let now = "2026-11-25T12:00:00Z";
        // kubectl create made it (Update by kubectl-create), then apply changes replicas.
        let mut live = deployment(1, "web:v1");
        let mut entries = Vec::new();
        record_update(
            &mut entries,
            "kubectl-create",
            "apps/v1",
            None,
            &fields_of("apps/v1", "Deployment", &live, Scope::Main),
            now,
        );
        write(&mut live, &entries);

        let err = apply(
            "apps/v1",
            "Deployment",
            &live,
            &deployment(3, "web:v1"),
            "kubectl",
            None,
            false,
            now,
        )
        .unwrap_err();
        assert_eq!(
            err,
            [Conflict {
                manager: "kubectl-create".into(),
                api_version: "apps/v1".into(),
                field: ".spec.replicas".into(),
                path: vec!["f:spec".into(), "f:replicas".into()],
            }]
        );
        assert_eq!(
            conflict_message(&err),
            r#"Apply failed with 1 conflict: conflict with "kubectl-create" using apps/v1: .spec.replicas"#
        );

        let forced = apply(
            "apps/v1",
            "Deployment",
            &live,
            &deployment(3, "web:v1"),
            "kubectl",
            None,
            true,
            now,
        )
        .unwrap();
        assert_eq!(forced["spec"]["replicas"], 3);
        let entries = read(&forced);
        let creator = entries
            .iter()
            .find(|e| e.manager == "kubectl-create")
            .unwrap();
        assert!(
            !creator
                .fields
                .contains_leaf(&["f:spec".into(), "f:replicas".into()])
        );
        // The image was applied with its current value: owned by both.
        let image: Vec<String> = [
            "f:spec",
            "f:template",
            "f:spec",
            "f:containers",
            r#"k:{"name":"web"}"#,
            "f:image",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert!(creator.fields.contains_leaf(&image));
        assert!(
            entries
                .iter()
                .find(|e| e.manager == "kubectl")
                .unwrap()
                .fields
                .contains_leaf(&image)
        );
    }

    #[test]
    fn applying_less_removes_what_only_this_manager_owned() {
        let now = "2026-11-25T12:00:00Z";
        let mut first = deployment(2, "web:v1");
        first["metadata"]["annotations"] = json!({"team": "a"});
        let created = apply(
            "apps/v1",
            "Deployment",
            &json!({}),
            &first,
            "kubectl",
            None,
            false,
            now,
        )
        .unwrap();
        let second = deployment(2, "web:v1");
        let updated = apply(
            "apps/v1",
            "Deployment",
            &created,
            &second,
            "kubectl",
            None,
            false,
            now,
        )
        .unwrap();
        assert!(
            updated["metadata"]
                .get("annotations")
                .is_none_or(|a| a.get("team").is_none()),
            "{updated}"
        );
        assert_eq!(updated["spec"]["replicas"], 2);
    }

    /// `changed_fields` walks both versions and skips equal subtrees; it must find exactly
    /// the leaves of the new version's field set that the old one lacks or holds another
    /// value at.
    #[test]
    fn changed_fields_are_the_leaves_that_differ() {
        fn by_definition(old: &Value, new: &Value, scope: Scope) -> FieldSet {
            let before = fields_of("v1", "Pod", old, scope);
            let mut out = FieldSet::default();
            for leaf in fields_of("v1", "Pod", new, scope).leaves() {
                if !before.contains_leaf(&leaf) || value_at(old, &leaf) != value_at(new, &leaf) {
                    out.insert(&leaf);
                }
            }
            out
        }
        let pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "front"},
                         "finalizers": ["a", "b"]},
            "spec": {"containers": [
                        {"name": "web", "image": "web:v1", "ports": [{"containerPort": 80, "protocol": "TCP"}],
                         "env": [{"name": "A", "value": "1"}]},
                        {"name": "side", "image": "side:v1"}],
                     "nodeSelector": {"disk": "ssd"}, "tolerations": [{"key": "k"}]},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]}});
        let changes: Vec<fn(&mut Value)> = vec![
            |_| {},
            |p| p["spec"]["nodeName"] = json!("node-1"),
            |p| p["metadata"]["labels"]["app"] = json!("api"),
            |p| p["metadata"]["labels"] = json!({"new": "x"}),
            |p| p["metadata"]["labels"] = json!("not a map"),
            |p| p["metadata"]["finalizers"] = json!(["b", "c"]),
            |p| p["spec"]["containers"][0]["image"] = json!("web:v2"),
            |p| p["spec"]["containers"][0]["env"][0]["value"] = json!("2"),
            |p| p["spec"]["containers"][1] = json!({"name": "other", "image": "side:v1"}),
            |p| p["spec"]["containers"] = json!([{"name": "side", "image": "side:v1"}]),
            |p| p["spec"]["containers"] = json!({}),
            |p| p["spec"]["tolerations"][0]["key"] = json!("j"),
            |p| p["spec"] = json!({}),
            |p| p["status"]["phase"] = json!("Running"),
            |p| p["status"]["conditions"][0]["status"] = json!("False"),
            |p| p["status"]["podIP"] = json!("10.42.0.5"),
        ];
        for (i, change) in changes.iter().enumerate() {
            let mut new = pod.clone();
            change(&mut new);
            for scope in [Scope::Main, Scope::Status] {
                for (old, new) in [(&pod, &new), (&new, &pod), (&json!({}), &new)] {
                    assert_eq!(
                        changed_fields("v1", "Pod", old, new, scope),
                        by_definition(old, new, scope),
                        "change {i}, {scope:?}: {old} -> {new}"
                    );
                }
            }
        }
    }

    #[test]
    fn updates_take_fields_from_other_managers() {
        let now = "t";
        let live = deployment(1, "web:v1");
        let applied = apply(
            "apps/v1",
            "Deployment",
            &json!({}),
            &live,
            "kubectl",
            None,
            false,
            now,
        )
        .unwrap();
        let mut scaled = applied.clone();
        scaled["spec"]["replicas"] = json!(5);
        let changed = changed_fields("apps/v1", "Deployment", &applied, &scaled, Scope::Main);
        assert_eq!(
            changed.leaves(),
            [vec!["f:spec".to_string(), "f:replicas".to_string()]]
        );
        let mut entries = read(&applied);
        record_update(
            &mut entries,
            "kubectl-scale",
            "apps/v1",
            Some("scale"),
            &changed,
            now,
        );
        let apply_entry = entries.iter().find(|e| e.manager == "kubectl").unwrap();
        assert!(
            !apply_entry
                .fields
                .contains_leaf(&["f:spec".into(), "f:replicas".into()])
        );
        assert_eq!(
            entries.last().unwrap().subresource.as_deref(),
            Some("scale")
        );
    }
}

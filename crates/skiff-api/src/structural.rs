//! Structural OpenAPI v3 schemas, as a CustomResourceDefinition's versions declare them: the
//! checks that make a schema structural, and what the API server does with one on every
//! write of a custom resource — defaulting, pruning of unknown fields, and validation with
//! upstream's messages.
//!
//! Invariants:
//! - A [`Schema`] is parsed once, when its definition is registered; patterns are compiled
//!   then, so a write pays for none of it.
//! - Pruning keeps `apiVersion`, `kind` and `metadata` at the root (and in embedded
//!   resources) whatever the schema says; everything else survives only if the schema (or
//!   `x-kubernetes-preserve-unknown-fields`) names it.
//! - Validation reports every failing field, each once, with upstream's cause type and text.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::status::Cause;

/// A JSON type a schema node can require.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    Object,
    Array,
    String,
    Integer,
    Number,
    Boolean,
}

impl Type {
    fn parse(s: &str) -> Option<Type> {
        Some(match s {
            "object" => Type::Object,
            "array" => Type::Array,
            "string" => Type::String,
            "integer" => Type::Integer,
            "number" => Type::Number,
            "boolean" => Type::Boolean,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Type::Object => "object",
            Type::Array => "array",
            Type::String => "string",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::Boolean => "boolean",
        }
    }

    fn admits(self, v: &Value) -> bool {
        match self {
            Type::Object => v.is_object(),
            Type::Array => v.is_array(),
            Type::String => v.is_string(),
            Type::Integer => {
                v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            Type::Number => v.is_number(),
            Type::Boolean => v.is_boolean(),
        }
    }
}

/// The JSON type name of a value, as upstream's type errors print it.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// One node of a structural schema.
#[derive(Debug, Default)]
pub struct Schema {
    pub ty: Option<Type>,
    pub format: Option<String>,
    pub properties: BTreeMap<String, Schema>,
    /// `additionalProperties` with a schema: a map whose values all follow it.
    pub additional: Option<Box<Schema>>,
    pub items: Option<Box<Schema>>,
    pub required: Vec<String>,
    pub enumeration: Vec<Value>,
    pub pattern: Option<(String, regex::Regex)>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_length: Option<usize>,
    pub max_length: Option<usize>,
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    pub min_properties: Option<usize>,
    pub max_properties: Option<usize>,
    pub unique_items: bool,
    pub nullable: bool,
    pub default: Option<Value>,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    /// `x-kubernetes-list-type`: `atomic`, `set` or `map`.
    pub list_type: Option<String>,
    /// `x-kubernetes-list-map-keys`, interned when parsed: server-side apply merges by
    /// them on every write.
    pub list_map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: `granular` (the default) or `atomic`.
    pub map_type: Option<String>,
    /// `x-kubernetes-validations`: (rule, message) pairs, checked by the CEL evaluator.
    pub rules: Vec<Rule>,
}

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Its place among the schema's rules, in the order they were parsed (0, 1, …): what
    /// an evaluator's compiled programs are indexed by.
    pub id: usize,
    pub rule: String,
    pub message: Option<String>,
    pub message_expression: Option<String>,
    pub field_path: Option<String>,
    pub reason: Option<String>,
}

/// Why a schema is not structural (or not one this server can use): the field path under
/// the schema and the message, as upstream's CRD validation words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaError {
    pub field: String,
    pub cause: Cause,
}

fn num(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn count(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(Value::as_u64).map(|n| n as usize)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// The schema keywords upstream refuses in a CRD (`$ref` and friends have no place in a
/// structural schema).
const FORBIDDEN: &[&str] = &[
    "$ref",
    "definitions",
    "id",
    "$schema",
    "dependencies",
    "patternProperties",
];

impl Schema {
    /// Parses a CRD version's `openAPIV3Schema`, or says every way it is not structural;
    /// `at` is its field path (for the messages).
    pub fn parse(raw: &Value, at: &str) -> Result<Schema, Vec<Cause>> {
        let mut cx = ParseCx::default();
        let schema = parse_node(raw, at, true, &mut cx);
        if cx.errors.is_empty() {
            Ok(schema)
        } else {
            Err(cx.errors)
        }
    }

    /// Fills in defaults, depth first, where a field is missing (or null and not nullable).
    pub fn apply_defaults(&self, v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (name, prop) in &self.properties {
                    let missing = match map.get(name) {
                        None => true,
                        Some(Value::Null) => !prop.nullable,
                        Some(_) => false,
                    };
                    if missing && let Some(d) = &prop.default {
                        map.insert(name.clone(), d.clone());
                    }
                    if let Some(child) = map.get_mut(name) {
                        prop.apply_defaults(child);
                    }
                }
                if let Some(extra) = &self.additional {
                    for (name, child) in map.iter_mut() {
                        if !self.properties.contains_key(name) {
                            extra.apply_defaults(child);
                        }
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    items.iter_mut().for_each(|i| item.apply_defaults(i));
                }
            }
            _ => {}
        }
    }

    /// Removes the fields the schema does not name and answers their paths (for field
    /// validation's warnings or errors). `root`: the object itself, whose apiVersion, kind
    /// and metadata always stay.
    pub fn prune(&self, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                let keeps_meta = root || self.embedded_resource;
                if !self.preserve_unknown && self.additional.is_none() {
                    map.retain(|k, _| {
                        let keep = self.properties.contains_key(k)
                            || (keeps_meta
                                && matches!(k.as_str(), "apiVersion" | "kind" | "metadata"));
                        if !keep {
                            unknown.push(join(path, k));
                        }
                        keep
                    });
                }
                for (k, child) in map.iter_mut() {
                    let sub = join(path, k);
                    if let Some(prop) = self.properties.get(k) {
                        prop.prune(child, &sub, false, unknown);
                    } else if let Some(extra) = &self.additional {
                        extra.prune(child, &sub, false, unknown);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for (i, child) in items.iter_mut().enumerate() {
                        item.prune(child, &format!("{path}[{i}]"), false, unknown);
                    }
                }
            }
            _ => {}
        }
    }

    /// Every way `v` (at `path`) breaks the schema.
    pub fn validate(&self, v: &Value, path: &str, out: &mut Vec<Cause>) {
        let shown = if path.is_empty() { "<root>" } else { path };
        if v.is_null() {
            if !self.nullable && (self.ty.is_some() || self.int_or_string) {
                let ty = self.ty.map_or("string", Type::name);
                out.push(type_error(shown, v, ty));
            }
            return;
        }
        if self.int_or_string {
            if !(v.is_string() || Type::Integer.admits(v)) {
                out.push(type_error(shown, v, "integer-or-string"));
                return;
            }
        } else if let Some(ty) = self.ty
            && !ty.admits(v)
        {
            out.push(type_error(shown, v, ty.name()));
            return;
        }
        if !self.enumeration.is_empty() && !self.enumeration.contains(v) {
            let supported: Vec<String> = self
                .enumeration
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string))
                .collect();
            let refs: Vec<&str> = supported.iter().map(String::as_str).collect();
            out.push(Cause::not_supported(shown, v, &refs));
        }
        match v {
            Value::String(s) => self.validate_string(s, v, shown, out),
            Value::Number(_) => self.validate_number(v, shown, out),
            Value::Array(items) => self.validate_array(items, v, path, shown, out),
            Value::Object(map) => self.validate_object(map, path, shown, out),
            _ => {}
        }
    }

    fn validate_string(&self, s: &str, v: &Value, shown: &str, out: &mut Vec<Cause>) {
        let chars = s.chars().count();
        if let Some(max) = self.max_length
            && chars > max
        {
            out.push(Cause::too_long(
                shown,
                &format!("may not be more than {max} bytes"),
            ));
        }
        if let Some(min) = self.min_length
            && chars < min
        {
            out.push(Cause::invalid(
                shown,
                v,
                &format!("{shown} in body should be at least {min} chars long"),
            ));
        }
        if let Some((source, re)) = &self.pattern
            && !re.is_match(s)
        {
            out.push(Cause::invalid(
                shown,
                v,
                &format!("{shown} in body should match '{source}'"),
            ));
        }
        if let Some(format) = &self.format
            && !format_holds(format, s)
        {
            out.push(Cause::invalid(
                shown,
                v,
                &format!("{shown} in body must be of type {format}: {s:?}"),
            ));
        }
    }

    fn validate_number(&self, v: &Value, shown: &str, out: &mut Vec<Cause>) {
        let Some(n) = v.as_f64() else { return };
        if let Some(max) = self.maximum {
            let over = if self.exclusive_maximum {
                n >= max
            } else {
                n > max
            };
            if over {
                let how = if self.exclusive_maximum {
                    "less than"
                } else {
                    "less than or equal to"
                };
                out.push(Cause::invalid(
                    shown,
                    v,
                    &format!("{shown} in body should be {how} {}", show_num(max)),
                ));
            }
        }
        if let Some(min) = self.minimum {
            let under = if self.exclusive_minimum {
                n <= min
            } else {
                n < min
            };
            if under {
                let how = if self.exclusive_minimum {
                    "greater than"
                } else {
                    "greater than or equal to"
                };
                out.push(Cause::invalid(
                    shown,
                    v,
                    &format!("{shown} in body should be {how} {}", show_num(min)),
                ));
            }
        }
        if let Some(m) = self.multiple_of
            && m != 0.0
            && (n / m).fract() != 0.0
        {
            out.push(Cause::invalid(
                shown,
                v,
                &format!("{shown} in body should be a multiple of {}", show_num(m)),
            ));
        }
    }

    fn validate_array(
        &self,
        items: &[Value],
        v: &Value,
        path: &str,
        shown: &str,
        out: &mut Vec<Cause>,
    ) {
        if let Some(max) = self.max_items
            && items.len() > max
        {
            out.push(Cause::too_many(shown, items.len(), max));
        }
        if let Some(min) = self.min_items
            && items.len() < min
        {
            out.push(Cause::invalid(
                shown,
                v,
                &format!("{shown} in body should have at least {min} items"),
            ));
        }
        let set = self.unique_items || self.list_type.as_deref() == Some("set");
        if set {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    out.push(Cause::duplicate(format!("{path}[{i}]"), item));
                }
            }
        }
        if self.list_type.as_deref() == Some("map") && !self.list_map_keys.is_empty() {
            let key_of = |item: &Value| -> Vec<Value> {
                self.list_map_keys
                    .iter()
                    .map(|k| item.get(*k).cloned().unwrap_or(Value::Null))
                    .collect()
            };
            for (i, item) in items.iter().enumerate() {
                let key = key_of(item);
                if items[..i].iter().any(|earlier| key_of(earlier) == key) {
                    let shown_key: Map<String, Value> = self
                        .list_map_keys
                        .iter()
                        .map(|k| k.to_string())
                        .zip(key.iter().cloned())
                        .collect();
                    out.push(Cause::duplicate(
                        format!("{path}[{i}]"),
                        &Value::Object(shown_key),
                    ));
                }
            }
        }
        if let Some(item) = &self.items {
            for (i, child) in items.iter().enumerate() {
                item.validate(child, &format!("{path}[{i}]"), out);
            }
        }
    }

    fn validate_object(
        &self,
        map: &Map<String, Value>,
        path: &str,
        shown: &str,
        out: &mut Vec<Cause>,
    ) {
        for name in &self.required {
            if !map.contains_key(name) {
                out.push(Cause::required(join(path, name)));
            }
        }
        if let Some(max) = self.max_properties
            && map.len() > max
        {
            out.push(Cause::too_many(shown, map.len(), max));
        }
        if let Some(min) = self.min_properties
            && map.len() < min
        {
            out.push(Cause::invalid(
                shown,
                &Value::from(map.len()),
                &format!("{shown} in body should have at least {min} properties"),
            ));
        }
        for (k, child) in map {
            let sub = join(path, k);
            if let Some(prop) = self.properties.get(k) {
                prop.validate(child, &sub, out);
            } else if let Some(extra) = &self.additional {
                extra.validate(child, &sub, out);
            }
        }
        if self.embedded_resource {
            for required in ["apiVersion", "kind"] {
                if map
                    .get(required)
                    .and_then(Value::as_str)
                    .is_none_or(str::is_empty)
                {
                    out.push(Cause::required(join(path, required)));
                }
            }
        }
    }

    /// Every node below this one that carries CEL rules, with its path pattern: calls
    /// `each(path, schema, value)` for the values of `v` that such nodes describe.
    pub fn visit_rules<'a>(
        &'a self,
        v: &'a Value,
        path: &str,
        each: &mut dyn FnMut(&str, &'a Schema, &'a Value),
    ) {
        if !self.rules.is_empty() {
            each(path, self, v);
        }
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if let Some(prop) = self.properties.get(k) {
                        prop.visit_rules(child, &join(path, k), each);
                    } else if let Some(extra) = &self.additional {
                        extra.visit_rules(child, &join(path, k), each);
                    }
                }
            }
            Value::Array(items) => {
                if let Some(item) = &self.items {
                    for (i, child) in items.iter().enumerate() {
                        item.visit_rules(child, &format!("{path}[{i}]"), each);
                    }
                }
            }
            _ => {}
        }
    }

    /// Whether any node carries CEL rules.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.values().any(Schema::has_rules)
            || self.additional.as_ref().is_some_and(|s| s.has_rules())
            || self.items.as_ref().is_some_and(|s| s.has_rules())
    }

    /// The node at a dotted path of properties (`.spec.replicas`), if the schema has it.
    pub fn at_path(&self, path: &str) -> Option<&Schema> {
        path.trim_start_matches('.')
            .split('.')
            .filter(|p| !p.is_empty())
            .try_fold(self, |node, part| node.properties.get(part))
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn show_num(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 {
        format!("{}", n as i64)
    } else {
        n.to_string()
    }
}

fn type_error(shown: &str, v: &Value, ty: &str) -> Cause {
    let actual = type_name(v);
    Cause {
        reason: "FieldValueTypeInvalid",
        message: format!(
            "{shown}: Invalid value: {actual:?}: {shown} in body must be of type {ty}: {actual:?}"
        ),
        field: shown.to_string(),
    }
}

/// The string formats upstream checks (others are accepted as any string, as upstream's).
fn format_holds(format: &str, s: &str) -> bool {
    match format {
        "date-time" => crate::object::parse_time(s).is_some(),
        "date" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.len() == 3
                && parts[0].len() == 4
                && parts[1].len() == 2
                && parts[2].len() == 2
                && parts.iter().all(|p| p.bytes().all(|b| b.is_ascii_digit()))
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "uuid" => {
            let hex: String = s.chars().filter(|c| *c != '-').collect();
            s.len() == 36 && hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit())
        }
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        _ => true,
    }
}

/// What parsing collects across the whole schema.
#[derive(Default)]
struct ParseCx {
    errors: Vec<Cause>,
    rules: usize,
}

fn parse_node(raw: &Value, at: &str, root: bool, cx: &mut ParseCx) -> Schema {
    let mut s = Schema::default();
    let Some(map) = raw.as_object() else {
        cx.errors.push(Cause::invalid(at, raw, "must be an object"));
        return s;
    };
    for key in FORBIDDEN {
        if map.contains_key(*key) {
            cx.errors.push(Cause::forbidden(
                format!("{at}.{key}"),
                &format!("{key} is not supported"),
            ));
        }
    }
    s.int_or_string = flag(raw, "x-kubernetes-int-or-string");
    s.preserve_unknown = flag(raw, "x-kubernetes-preserve-unknown-fields");
    s.embedded_resource = flag(raw, "x-kubernetes-embedded-resource");
    match map.get("type").and_then(Value::as_str) {
        Some(t) => match Type::parse(t) {
            Some(ty) => s.ty = Some(ty),
            None => cx.errors.push(Cause::not_supported(
                format!("{at}.type"),
                &Value::from(t),
                &["array", "boolean", "integer", "number", "object", "string"],
            )),
        },
        None if !s.int_or_string && !s.preserve_unknown => cx.errors.push(Cause::required_because(
            format!("{at}.type"),
            "must not be empty for specified object fields",
        )),
        None => {}
    }
    if root && s.ty.is_some_and(|t| t != Type::Object) {
        cx.errors.push(Cause::invalid(
            format!("{at}.type"),
            &Value::from(s.ty.map_or("", Type::name)),
            "must be object at the root",
        ));
    }
    s.format = map
        .get("format")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let child_at = format!("{at}.properties[{name}]");
            if root && name == "metadata" {
                // Only name and generateName may be constrained at the root's metadata.
                if let Some(extra) = child.get("properties").and_then(Value::as_object)
                    && extra.keys().any(|k| k != "name" && k != "generateName")
                {
                    cx.errors.push(Cause::forbidden(
                        format!("{child_at}.properties"),
                        "must not contain any other properties than name and generateName",
                    ));
                }
            }
            s.properties
                .insert(name.clone(), parse_node(child, &child_at, false, cx));
        }
    }
    match map.get("additionalProperties") {
        Some(Value::Object(_)) if !s.properties.is_empty() => cx.errors.push(Cause::forbidden(
            format!("{at}.additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        )),
        Some(child @ Value::Object(_)) => {
            s.additional = Some(Box::new(parse_node(
                child,
                &format!("{at}.additionalProperties"),
                false,
                cx,
            )));
        }
        Some(Value::Bool(false)) | None => {}
        Some(other) => cx.errors.push(Cause::forbidden(
            format!("{at}.additionalProperties"),
            &format!("must not be {other} (use x-kubernetes-preserve-unknown-fields)"),
        )),
    }
    match map.get("items") {
        Some(child @ Value::Object(_)) => {
            s.items = Some(Box::new(parse_node(
                child,
                &format!("{at}.items"),
                false,
                cx,
            )));
        }
        Some(_) => cx.errors.push(Cause::forbidden(
            format!("{at}.items"),
            "items must be a schema object and not an array",
        )),
        None if s.ty == Some(Type::Array) => cx.errors.push(Cause::required_because(
            format!("{at}.items"),
            "must be specified",
        )),
        None => {}
    }
    s.required = crate::object::string_list(map.get("required"));
    s.enumeration = map
        .get("enum")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if let Some(p) = map.get("pattern").and_then(Value::as_str) {
        match regex::Regex::new(p) {
            Ok(re) => s.pattern = Some((p.to_string(), re)),
            Err(e) => cx.errors.push(Cause::invalid(
                format!("{at}.pattern"),
                &Value::from(p),
                &format!("must be a valid regular expression, but isn't: {e}"),
            )),
        }
    }
    s.minimum = num(raw, "minimum");
    s.maximum = num(raw, "maximum");
    s.exclusive_minimum = flag(raw, "exclusiveMinimum");
    s.exclusive_maximum = flag(raw, "exclusiveMaximum");
    s.multiple_of = num(raw, "multipleOf");
    s.min_length = count(raw, "minLength");
    s.max_length = count(raw, "maxLength");
    s.min_items = count(raw, "minItems");
    s.max_items = count(raw, "maxItems");
    s.min_properties = count(raw, "minProperties");
    s.max_properties = count(raw, "maxProperties");
    s.unique_items = flag(raw, "uniqueItems");
    s.nullable = flag(raw, "nullable");
    s.default = map.get("default").cloned();
    if s.default.is_some() && root {
        cx.errors.push(Cause::forbidden(
            format!("{at}.default"),
            "must not be set for root",
        ));
    }
    s.list_type = map
        .get("x-kubernetes-list-type")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(lt) = &s.list_type {
        if !matches!(lt.as_str(), "atomic" | "set" | "map") {
            cx.errors.push(Cause::not_supported(
                format!("{at}.x-kubernetes-list-type"),
                &Value::from(lt.as_str()),
                &["atomic", "set", "map"],
            ));
        }
        if s.ty != Some(Type::Array) {
            cx.errors.push(Cause::invalid(
                format!("{at}.type"),
                &Value::from(s.ty.map_or("", Type::name)),
                "must be array if x-kubernetes-list-type is specified",
            ));
        }
    }
    s.list_map_keys = crate::intern::strs(&crate::object::string_list(
        map.get("x-kubernetes-list-map-keys"),
    ));
    s.map_type = map
        .get("x-kubernetes-map-type")
        .and_then(Value::as_str)
        .map(str::to_string);
    if s.list_type.as_deref() == Some("map") && s.list_map_keys.is_empty() {
        cx.errors.push(Cause::required_because(
            format!("{at}.x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
    }
    if let Some(rules) = map
        .get("x-kubernetes-validations")
        .and_then(Value::as_array)
    {
        for (i, r) in rules.iter().enumerate() {
            let text = |k: &str| r.get(k).and_then(Value::as_str).map(str::to_string);
            match text("rule").filter(|t| !t.trim().is_empty()) {
                Some(rule) => s.rules.push(Rule {
                    id: {
                        cx.rules += 1;
                        cx.rules - 1
                    },
                    rule,
                    message: text("message"),
                    message_expression: text("messageExpression"),
                    field_path: text("fieldPath"),
                    reason: text("reason"),
                }),
                None => cx.errors.push(Cause::required(format!(
                    "{at}.x-kubernetes-validations[{i}].rule"
                ))),
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn widget() -> Schema {
        Schema::parse(
            &json!({
                "type": "object",
                "properties": {
                    "spec": {
                        "type": "object",
                        "required": ["image"],
                        "properties": {
                            "image": {"type": "string", "minLength": 1},
                            "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                            "cron": {"type": "string", "pattern": "^(\\d+|\\*)( (\\d+|\\*)){4}$"},
                            "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                            "port": {"x-kubernetes-int-or-string": true},
                            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set", "maxItems": 3},
                            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                                "items": {"type": "object", "properties": {"name": {"type": "string"}, "port": {"type": "integer"}}}},
                            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 5}},
                            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                            "note": {"type": "string", "nullable": true},
                            "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {"spec": {"type": "object"}}},
                        }
                    },
                    "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
                }
            }),
            "spec.validation.openAPIV3Schema",
        )
        .unwrap()
    }

    fn messages(s: &Schema, v: &Value) -> Vec<String> {
        let mut out = Vec::new();
        s.validate(v, "", &mut out);
        let mut out: Vec<String> = out.into_iter().map(|c| c.message).collect();
        out.sort();
        out
    }

    #[test]
    fn bad_values_get_upstreams_messages() {
        let s = widget();
        let obj = json!({"spec": {"image": "", "replicas": 20, "cron": "* * * *", "mode": "odd",
            "port": 1.5, "tags": ["a", "a"], "labels": {"k": "toolong"}, "note": null}});
        assert_eq!(
            messages(&s, &obj),
            [
                "spec.cron: Invalid value: \"* * * *\": spec.cron in body should match '^(\\d+|\\*)( (\\d+|\\*)){4}$'",
                "spec.image: Invalid value: \"\": spec.image in body should be at least 1 chars long",
                "spec.labels.k: Too long: may not be more than 5 bytes",
                "spec.mode: Unsupported value: \"odd\": supported values: \"fast\", \"slow\"",
                "spec.port: Invalid value: \"number\": spec.port in body must be of type integer-or-string: \"number\"",
                "spec.replicas: Invalid value: 20: spec.replicas in body should be less than or equal to 10",
                "spec.tags[1]: Duplicate value: \"a\"",
            ]
        );
        assert_eq!(
            messages(&s, &json!({"spec": {"replicas": "three"}})),
            [
                "spec.image: Required value",
                "spec.replicas: Invalid value: \"string\": spec.replicas in body must be of type integer: \"string\"",
            ]
        );
        assert_eq!(
            messages(
                &s,
                &json!({"spec": {"image": "x", "tags": ["a", "b", "c", "d"],
                "ports": [{"name": "h", "port": 1}, {"name": "h", "port": 2}],
                "template": {"spec": {}}}})
            ),
            [
                "spec.ports[1]: Duplicate value: {\"name\":\"h\"}",
                "spec.tags: Too many: 4: must have at most 3 items",
                "spec.template.apiVersion: Required value",
                "spec.template.kind: Required value",
            ]
        );
        assert!(
            messages(
                &s,
                &json!({"spec": {"image": "x", "port": "http", "note": null}})
            )
            .is_empty()
        );
    }

    #[test]
    fn defaults_fill_missing_fields_only() {
        let s = widget();
        let mut obj = json!({"spec": {"image": "x", "mode": "fast"}});
        s.apply_defaults(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({"image": "x", "mode": "fast", "replicas": 1})
        );
    }

    #[test]
    fn pruning_drops_what_the_schema_does_not_name() {
        let s = widget();
        let mut obj = json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
            "spec": {"image": "x", "bogus": 1, "extra": {"anything": {"goes": true}},
                "labels": {"a": "b"}, "ports": [{"name": "h", "junk": 1}],
                "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "other": 2}},
            "top": true});
        let mut unknown = Vec::new();
        s.prune(&mut obj, "", true, &mut unknown);
        unknown.sort();
        assert_eq!(
            unknown,
            [
                "spec.bogus",
                "spec.ports[0].junk",
                "spec.template.other",
                "top"
            ]
        );
        assert_eq!(obj["spec"]["extra"]["anything"]["goes"], true);
        assert_eq!(obj["metadata"]["name"], "w");
        assert_eq!(obj["spec"]["template"]["metadata"]["name"], "p");
    }

    #[test]
    fn schemas_that_are_not_structural_are_refused() {
        let errors = Schema::parse(
            &json!({"type": "object", "properties": {
                "spec": {"properties": {"a": {"type": "strin"}}},
                "list": {"type": "array"},
                "bad": {"type": "string", "pattern": "("},
                "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
            }}),
            "s",
        )
        .unwrap_err();
        let mut fields: Vec<&str> = errors.iter().map(|c| c.field.as_str()).collect();
        fields.sort();
        assert_eq!(
            fields,
            [
                "s.properties[bad].pattern",
                "s.properties[list].items",
                "s.properties[metadata].properties",
                "s.properties[spec].properties[a].type",
                "s.properties[spec].type",
            ]
        );
        assert!(Schema::parse(&json!({"type": "string"}), "s").is_err());
    }

    #[test]
    fn rules_are_found_where_their_values_are() {
        let s = Schema::parse(
            &json!({"type": "object", "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [{"rule": "self.min <= self.max", "message": "min above max"}],
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}}}}}),
            "s",
        )
        .unwrap();
        assert!(s.has_rules());
        let obj = json!({"spec": {"min": 1, "max": 2}});
        let mut seen = Vec::new();
        s.visit_rules(&obj, "", &mut |path, node, v| {
            seen.push((path.to_string(), node.rules.len(), v.clone()))
        });
        assert_eq!(seen, [("spec".to_string(), 1, json!({"min": 1, "max": 2}))]);
        assert!(s.at_path(".spec.min").is_some());
        assert!(s.at_path(".spec.nope").is_none());
    }
}

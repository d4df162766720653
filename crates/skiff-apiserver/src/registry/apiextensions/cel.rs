//! CEL validation rules (`x-kubernetes-validations`), evaluated with the `cel` crate
//! (cel-rust) over the standard library plus its strings, lists and math extensions.
//!
//! What upstream's Kubernetes CEL library has that this lacks: the `quantity`, `url`,
//! `ip`/`cidr`, `format` and `authz` libraries, `isSorted`/`indexOf` list helpers beyond
//! the lists extension, optional types, and cost estimation (upstream refuses rules whose
//! estimated cost is too high; here a rule runs however long it takes, bounded by the size
//! of the object).
//!
//! Invariants: rules are compiled once per definition (a syntax error refuses the kind);
//! `self` is the value at the rule's node, `oldSelf` the value at the same place in the
//! object before an update. A rule that reads `oldSelf` is a transition rule: it is not
//! checked on create, nor where the old object has no value at that place (upstream's).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use serde_json::Value;
use skiff_api::Cause;
use skiff_api::structural::{Rule, Schema, Type};

/// The environment every rule compiles and runs in.
fn env() -> Arc<cel::Env> {
    static ENV: OnceLock<Arc<cel::Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = cel::Env::stdlib();
        for extension in [
            cel::extensions::strings as fn(&mut cel::Env) -> _,
            cel::extensions::lists,
            cel::extensions::math,
        ] {
            if let Err(e) = env.add_extension(extension) {
                tracing::warn!(error = ?e, "a CEL extension could not be added");
            }
        }
        Arc::new(env)
    })
    .clone()
}

struct Compiled {
    program: cel::Program,
    message: Option<cel::Program>,
    transition: bool,
}

/// A schema's rules, compiled, indexed by their `Rule::id`.
#[derive(Default)]
pub struct Rules {
    compiled: Vec<Option<Compiled>>,
}

fn compile_one(source: &str) -> Result<cel::Program, String> {
    env().compile(source).map_err(|e| {
        let text = e.to_string();
        text.lines().next().unwrap_or(&text).to_string()
    })
}

fn collect<'a>(schema: &'a Schema, out: &mut Vec<&'a Rule>) {
    out.extend(schema.rules.iter());
    for child in schema.properties.values() {
        collect(child, out);
    }
    if let Some(extra) = &schema.additional {
        collect(extra, out);
    }
    if let Some(items) = &schema.items {
        collect(items, out);
    }
}

impl Rules {
    /// Compiles every rule of `schema`, or says which does not compile.
    pub fn compile(schema: &Schema) -> Result<Rules, String> {
        let mut rules = Vec::new();
        collect(schema, &mut rules);
        let mut compiled: Vec<Option<Compiled>> = Vec::new();
        compiled.resize_with(rules.iter().map(|r| r.id + 1).max().unwrap_or(0), || None);
        for rule in rules {
            let program = compile_one(&rule.rule)
                .map_err(|e| format!("rule {:?} does not compile: {e}", rule.rule))?;
            let message = match &rule.message_expression {
                Some(m) => Some(
                    compile_one(m)
                        .map_err(|e| format!("messageExpression {m:?} does not compile: {e}"))?,
                ),
                None => None,
            };
            let transition = program.references().has_variable("oldSelf");
            compiled[rule.id] = Some(Compiled {
                program,
                message,
                transition,
            });
        }
        Ok(Rules { compiled })
    }

    /// Checks every rule against `obj` (and `old`, for transition rules), adding a cause
    /// for each that fails.
    pub fn check(&self, schema: &Schema, obj: &Value, old: Option<&Value>, out: &mut Vec<Cause>) {
        if self.compiled.is_empty() {
            return;
        }
        schema.visit_rules(obj, "", &mut |path, node, value| {
            let old_value = old.and_then(|o| value_at(o, path));
            for rule in &node.rules {
                let Some(c) = self.compiled.get(rule.id).and_then(Option::as_ref) else {
                    continue;
                };
                if c.transition && old_value.is_none() {
                    continue;
                }
                if let Some(cause) = evaluate(c, rule, node, path, value, old_value) {
                    out.push(cause);
                }
            }
        });
    }
}

/// The value at a path `visit_rules` reported (`spec.items[2].name`), in another object.
fn value_at<'a>(obj: &'a Value, path: &str) -> Option<&'a Value> {
    if path.is_empty() {
        return Some(obj);
    }
    // List items are matched by place only through map keys upstream; by index they may
    // be different items, so transition rules below lists are not checked.
    if path.contains('[') {
        return None;
    }
    path.split('.').try_fold(obj, |at, k| at.get(k))
}

fn evaluate(
    c: &Compiled,
    rule: &Rule,
    node: &Schema,
    path: &str,
    value: &Value,
    old: Option<&Value>,
) -> Option<Cause> {
    let mut ctx = cel::Context::with_env(env());
    ctx.add_variable_from_value("self", to_cel(value));
    if let Some(old) = old {
        ctx.add_variable_from_value("oldSelf", to_cel(old));
    }
    let field = match &rule.field_path {
        Some(extra) => format!("{path}{extra}").trim_start_matches('.').to_string(),
        None => path.to_string(),
    };
    let shown = if field.is_empty() {
        "<root>".to_string()
    } else {
        field
    };
    let ty = node.ty.map_or("object", Type::name);
    let detail = match c.program.execute(&ctx) {
        Ok(cel::Value::Bool(true)) => return None,
        Ok(cel::Value::Bool(false)) => {
            let from_expression = c.message.as_ref().and_then(|m| match m.execute(&ctx) {
                Ok(cel::Value::String(s)) if !s.trim().is_empty() => Some(s.to_string()),
                _ => None,
            });
            from_expression
                .or_else(|| rule.message.clone())
                .unwrap_or_else(|| format!("failed rule: {}", rule.rule))
        }
        Ok(other) => format!("rule {:?} evaluated to {other:?}, not a bool", rule.rule),
        Err(e) => format!("{e} evaluating rule: {}", rule.rule),
    };
    Some(match rule.reason.as_deref() {
        Some("FieldValueForbidden") => Cause::forbidden(shown, &detail),
        Some("FieldValueRequired") => Cause::required_because(shown, &detail),
        _ => Cause::invalid(shown, &Value::from(ty), &detail),
    })
}

/// A JSON value as CEL sees it: integers stay integers (`int`, as Kubernetes' schemas
/// declare them), other numbers are doubles.
fn to_cel(v: &Value) -> cel::Value {
    match v {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => cel::Value::Int(i),
            None => cel::Value::Float(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::String(Arc::new(s.clone())),
        Value::Array(items) => cel::Value::List(Arc::new(items.iter().map(to_cel).collect())),
        Value::Object(map) => {
            let entries: HashMap<String, cel::Value> =
                map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::Map(entries.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(
            &json!({"type": "object", "properties": {"spec": {"type": "object",
                "x-kubernetes-validations": [
                    {"rule": "self.min <= self.max", "message": "min must not exceed max"},
                    {"rule": "self.name.startsWith('w')", "messageExpression": "'name ' + self.name + ' must start with w'"},
                    {"rule": "self.max <= oldSelf.max", "message": "max may only shrink"},
                    {"rule": "!has(self.frozen) || self.frozen == oldSelf.frozen", "reason": "FieldValueForbidden", "message": "frozen is frozen"}],
                "properties": {"min": {"type": "integer"}, "max": {"type": "integer"}, "name": {"type": "string"},
                    "frozen": {"type": "boolean"},
                    "tags": {"type": "array", "items": {"type": "string",
                        "x-kubernetes-validations": [{"rule": "self.size() <= 3"}]}}}}}}),
            "s",
        )
        .unwrap()
    }

    fn messages(obj: &Value, old: Option<&Value>) -> Vec<String> {
        let s = schema();
        let rules = Rules::compile(&s).unwrap();
        let mut out = Vec::new();
        rules.check(&s, obj, old, &mut out);
        out.into_iter().map(|c| c.message).collect()
    }

    #[test]
    fn rules_refuse_with_their_messages() {
        let good = json!({"spec": {"min": 1, "max": 5, "name": "widget", "tags": ["a"]}});
        assert!(messages(&good, None).is_empty());
        let bad = json!({"spec": {"min": 9, "max": 5, "name": "gadget", "tags": ["long-tag"]}});
        assert_eq!(
            messages(&bad, None),
            [
                "spec: Invalid value: \"object\": min must not exceed max",
                "spec: Invalid value: \"object\": name gadget must start with w",
                "spec.tags[0]: Invalid value: \"string\": failed rule: self.size() <= 3",
            ]
        );
    }

    #[test]
    fn transition_rules_compare_with_the_old_object_on_update_only() {
        let old = json!({"spec": {"min": 1, "max": 5, "name": "w", "frozen": true}});
        let grown = json!({"spec": {"min": 1, "max": 6, "name": "w", "frozen": false}});
        assert_eq!(
            messages(&grown, Some(&old)),
            [
                "spec: Invalid value: \"object\": max may only shrink",
                "spec: Forbidden: frozen is frozen",
            ]
        );
        assert!(messages(&grown, None).is_empty(), "not checked on create");
    }

    #[test]
    fn rules_that_do_not_compile_refuse_the_schema() {
        let s = Schema::parse(
            &json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]}),
            "s",
        )
        .unwrap();
        let err = Rules::compile(&s).err().unwrap();
        assert!(
            err.starts_with("rule \"self.a ===\" does not compile"),
            "{err}"
        );
    }
}

//! The JSONPath subset CustomResourceDefinitions use for printer columns and selectable
//! fields: `.a.b`, `.a[0]`, `.a[*].b`, `.a['key.with.dots']` and filters such as
//! `.status.conditions[?(@.type=="Ready")].status`. A path is parsed once, when its
//! definition is registered, and evaluated on every row.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    /// `[?(@.<path> == <value>)]` (also `!=`).
    Filter {
        path: Vec<String>,
        equals: bool,
        value: Value,
    },
}

/// A parsed path.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    steps: Vec<Step>,
}

/// Why a path cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

impl JsonPath {
    /// Parses `.a.b[0]` (optionally wrapped in `{}` as kubectl's templates write it).
    pub fn parse(text: &str) -> Result<JsonPath, PathError> {
        let t = text.trim();
        let t = t
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(t);
        let t = t.strip_prefix('$').unwrap_or(t);
        if !t.starts_with('.') && !t.starts_with('[') {
            return Err(PathError(format!("{text:?} must start with a '.'")));
        }
        let bytes: Vec<char> = t.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                '.' => {
                    let start = i + 1;
                    let mut end = start;
                    while end < bytes.len() && bytes[end] != '.' && bytes[end] != '[' {
                        end += 1;
                    }
                    let name: String = bytes[start..end].iter().collect();
                    if name.is_empty() {
                        return Err(PathError(format!("{text:?} has an empty field name")));
                    }
                    steps.push(Step::Field(name));
                    i = end;
                }
                '[' => {
                    let close = find_close(&bytes, i)
                        .ok_or_else(|| PathError(format!("{text:?} has an unclosed '['")))?;
                    let inner: String = bytes[i + 1..close].iter().collect();
                    steps.push(parse_bracket(inner.trim(), text)?);
                    i = close + 1;
                }
                c => return Err(PathError(format!("{text:?}: unexpected {c:?}"))),
            }
        }
        Ok(JsonPath { steps })
    }

    /// Every value the path reaches in `v`, in order.
    pub fn find<'a>(&self, v: &'a Value) -> Vec<&'a Value> {
        let mut current = vec![v];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                match step {
                    Step::Field(name) => next.extend(v.get(name.as_str())),
                    Step::Index(n) => next.extend(v.get(*n)),
                    Step::All => match v {
                        Value::Array(items) => next.extend(items.iter()),
                        Value::Object(map) => next.extend(map.values()),
                        _ => {}
                    },
                    Step::Filter {
                        path,
                        equals,
                        value,
                    } => {
                        if let Value::Array(items) = v {
                            next.extend(items.iter().filter(|item| {
                                let found = path.iter().try_fold(*item, |at, k| at.get(k.as_str()));
                                (found == Some(value)) == *equals
                            }));
                        }
                    }
                }
            }
            current = next;
        }
        current
    }

    /// The property names of a path made of fields only (`.spec.replicas` → spec,
    /// replicas), as the scale subresource's paths must be.
    pub fn fields(&self) -> Option<Vec<&str>> {
        self.steps
            .iter()
            .map(|s| match s {
                Step::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut quote = None;
    let mut depth = 0;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn unquote(s: &str) -> Option<&str> {
    let s = s.trim();
    s.strip_prefix('\'')
        .and_then(|s| s.strip_suffix('\''))
        .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
}

fn parse_bracket(inner: &str, text: &str) -> Result<Step, PathError> {
    if inner == "*" {
        return Ok(Step::All);
    }
    if let Ok(n) = inner.parse::<usize>() {
        return Ok(Step::Index(n));
    }
    if let Some(name) = unquote(inner) {
        return Ok(Step::Field(name.to_string()));
    }
    if let Some(filter) = inner.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        let (lhs, rhs, equals) = if let Some((l, r)) = filter.split_once("==") {
            (l, r, true)
        } else if let Some((l, r)) = filter.split_once("!=") {
            (l, r, false)
        } else {
            return Err(PathError(format!(
                "{text:?}: only == and != filters are supported"
            )));
        };
        let path = lhs
            .trim()
            .strip_prefix("@.")
            .ok_or_else(|| PathError(format!("{text:?}: a filter must start with @.")))?;
        let value = match unquote(rhs) {
            Some(s) => Value::String(s.to_string()),
            None => serde_json::from_str(rhs.trim())
                .map_err(|_| PathError(format!("{text:?}: cannot read {:?}", rhs.trim())))?,
        };
        return Ok(Step::Filter {
            path: path.split('.').map(str::to_string).collect(),
            equals,
            value,
        });
    }
    Err(PathError(format!("{text:?}: cannot read [{inner}]")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj() -> Value {
        json!({"spec": {"replicas": 3, "ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]},
               "metadata": {"labels": {"app.kubernetes.io/name": "web"}},
               "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Synced", "status": "False"}]}})
    }

    fn found(path: &str) -> Vec<Value> {
        JsonPath::parse(path)
            .unwrap()
            .find(&obj())
            .into_iter()
            .cloned()
            .collect()
    }

    #[test]
    fn paths_reach_fields_items_and_filtered_items() {
        assert_eq!(found(".spec.replicas"), [json!(3)]);
        assert_eq!(found("{.spec.ports[1].name}"), [json!("b")]);
        assert_eq!(found(".spec.ports[*].port"), [json!(1), json!(2)]);
        assert_eq!(
            found(".status.conditions[?(@.type==\"Ready\")].status"),
            [json!("True")]
        );
        assert_eq!(
            found(".status.conditions[?(@.status!='True')].type"),
            [json!("Synced")]
        );
        assert_eq!(
            found(".metadata.labels['app.kubernetes.io/name']"),
            [json!("web")]
        );
        assert!(found(".spec.missing.deeper").is_empty());
        assert_eq!(
            JsonPath::parse(".spec.replicas").unwrap().fields(),
            Some(vec!["spec", "replicas"])
        );
        assert_eq!(JsonPath::parse(".spec.ports[0]").unwrap().fields(), None);
    }

    #[test]
    fn malformed_paths_are_refused() {
        for bad in [
            "spec.replicas",
            ".spec[",
            ".spec..x",
            ".a[?(@.x>1)]",
            ".a[bogus]",
            ".",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }
}

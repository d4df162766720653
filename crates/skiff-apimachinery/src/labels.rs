//! Label and field selectors: upstream's query syntax (`app=web,tier!=db,env in (a,b),!legacy`)
//! and the structured `metav1.LabelSelector` (`matchLabels`, `matchExpressions`).

use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Equals,
    NotEquals,
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    DoesNotExist,
    GreaterThan(i64),
    LessThan(i64),
}

/// One condition on one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub op: Op,
    /// The value for `Equals`/`NotEquals`.
    pub value: String,
}

/// Whether a `metav1.LabelSelectorRequirement` (`In`, `NotIn`, `Exists`, `DoesNotExist`)
/// holds for a label's value; `None` for an operator that is none of those. Typed clients
/// match their selectors with this, without building a [`Selector`].
pub fn expression_matches(operator: &str, values: &[String], actual: Option<&str>) -> Option<bool> {
    let listed = |v: &str| values.iter().any(|s| s == v);
    Some(match operator {
        "In" => actual.is_some_and(listed),
        "NotIn" => !actual.is_some_and(listed),
        "Exists" => actual.is_some(),
        "DoesNotExist" => actual.is_none(),
        _ => return None,
    })
}

impl Requirement {
    fn matches(&self, actual: Option<&str>) -> bool {
        match (&self.op, actual) {
            (Op::Equals, Some(v)) => v == self.value,
            (Op::Equals, None) => false,
            (Op::NotEquals, v) => v != Some(self.value.as_str()),
            (Op::In(set), v) => expression_matches("In", set, v) == Some(true),
            (Op::NotIn(set), v) => expression_matches("NotIn", set, v) == Some(true),
            (Op::Exists, v) => v.is_some(),
            (Op::DoesNotExist, v) => v.is_none(),
            (Op::GreaterThan(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v > *n),
            (Op::LessThan(n), Some(v)) => v.parse::<i64>().is_ok_and(|v| v < *n),
            (Op::GreaterThan(_) | Op::LessThan(_), None) => false,
        }
    }
}

/// Why a selector does not parse; the API answers 400 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse requirement: {cause} (in label selector {input:?})")]
    Label { input: String, cause: LabelSyntax },
    #[error("invalid selector: '{input}'; can't understand '{term}'")]
    Field { input: String, term: String },
    #[error("{0:?} is not a valid label selector operator")]
    Operator(Option<String>),
}

/// Where a label selector query breaks upstream's grammar.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelSyntax {
    #[error("expected '(' at {0:?}")]
    OpenParen(String),
    #[error("expected ',' or ')' at {0:?}")]
    CloseParen(String),
    #[error("key is required after '!'")]
    KeyAfterBang,
    #[error("expected a key at {0:?}")]
    Key(String),
    #[error("{0:?} is not an integer")]
    Integer(String),
    #[error("found {0:?}, expected ','")]
    Comma(String),
}

/// A conjunction of requirements; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    pub requirements: Vec<Requirement>,
}

impl Selector {
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether every requirement holds, looking values up with `get`.
    pub fn matches<'a>(&self, get: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|r| r.matches(get(&r.key)))
    }

    /// Whether the selector matches a `metadata.labels` map (absent labels are empty).
    pub fn matches_labels(&self, labels: Option<&Value>) -> bool {
        let map = labels.and_then(Value::as_object);
        self.matches(|k| map.and_then(|m| m.get(k)).and_then(Value::as_str))
    }

    /// Parses a label selector query (`labelSelector=`).
    pub fn parse_labels(input: &str) -> Result<Selector, SelectorError> {
        LabelParser::new(input)
            .parse()
            .map_err(|cause| SelectorError::Label {
                input: input.to_string(),
                cause,
            })
    }

    /// Parses a field selector query (`fieldSelector=`): only `=`, `==` and `!=`, with `\`
    /// escaping `,`, `=` and `!` inside values.
    pub fn parse_fields(input: &str) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        for term in split_unescaped(input, ',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (key, op, value) = split_field_term(term).ok_or_else(|| SelectorError::Field {
                input: input.to_string(),
                term: term.to_string(),
            })?;
            requirements.push(Requirement {
                key: key.trim().to_string(),
                op,
                value: unescape(value),
            });
        }
        Ok(Selector { requirements })
    }

    /// A structured `metav1.LabelSelector` (`{matchLabels, matchExpressions}`).
    pub fn from_label_selector(selector: &Value) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                requirements.push(Requirement {
                    key: k.clone(),
                    op: Op::Equals,
                    value: v.as_str().unwrap_or_default().to_string(),
                });
            }
        }
        if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In(values),
                    Some("NotIn") => Op::NotIn(values),
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::DoesNotExist,
                    other => {
                        return Err(SelectorError::Operator(other.map(str::to_string)));
                    }
                };
                requirements.push(Requirement {
                    key: key.to_string(),
                    op,
                    value: String::new(),
                });
            }
        }
        Ok(Selector { requirements })
    }
}

/// Splits on `sep` where it is not escaped by a backslash.
fn split_unescaped(input: &str, sep: char) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut escaped = false;
    for (i, c) in input.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c == sep {
            parts.push(&input[start..i]);
            start = i + 1;
        }
    }
    parts.push(&input[start..]);
    parts
}

fn split_field_term(term: &str) -> Option<(&str, Op, &str)> {
    let mut escaped = false;
    for (i, c) in term.char_indices() {
        if escaped {
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            '!' if term[i..].starts_with("!=") => {
                return Some((&term[..i], Op::NotEquals, &term[i + 2..]));
            }
            '=' if term[i..].starts_with("==") => {
                return Some((&term[..i], Op::Equals, &term[i + 2..]));
            }
            '=' => return Some((&term[..i], Op::Equals, &term[i + 1..])),
            _ => {}
        }
    }
    None
}

fn unescape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A small hand-written parser for upstream's label selector grammar.
struct LabelParser<'a> {
    input: &'a str,
    pos: usize,
}

impl<'a> LabelParser<'a> {
    fn new(input: &'a str) -> Self {
        LabelParser { input, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.input[self.pos..]
    }

    fn skip_ws(&mut self) {
        let trimmed = self.rest().trim_start();
        self.pos = self.input.len() - trimmed.len();
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_ws();
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// A key or value: letters, digits and `-_./`.
    fn word(&mut self) -> &'a str {
        self.skip_ws();
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-_./".contains(c)))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    /// `in`/`notin` must be whole words, not the start of a value.
    fn eat_keyword(&mut self, kw: &str) -> bool {
        self.skip_ws();
        let rest = self.rest();
        if rest.starts_with(kw)
            && rest[kw.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace() || c == '(')
        {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn set(&mut self) -> Result<Vec<String>, LabelSyntax> {
        if !self.eat("(") {
            return Err(LabelSyntax::OpenParen(self.rest().into()));
        }
        let mut values = Vec::new();
        loop {
            if self.eat(")") {
                return Ok(values);
            }
            let v = self.word();
            values.push(v.to_string());
            if self.eat(",") {
                continue;
            }
            if self.eat(")") {
                return Ok(values);
            }
            return Err(LabelSyntax::CloseParen(self.rest().into()));
        }
    }

    fn requirement(&mut self) -> Result<Requirement, LabelSyntax> {
        if self.eat("!") {
            let key = self.word();
            if key.is_empty() {
                return Err(LabelSyntax::KeyAfterBang);
            }
            return Ok(Requirement {
                key: key.into(),
                op: Op::DoesNotExist,
                value: String::new(),
            });
        }
        let key = self.word().to_string();
        if key.is_empty() {
            return Err(LabelSyntax::Key(self.rest().into()));
        }
        let (op, value) = if self.eat("==") || self.eat("=") {
            (Op::Equals, self.word().to_string())
        } else if self.eat("!=") {
            (Op::NotEquals, self.word().to_string())
        } else if self.eat_keyword("notin") {
            (Op::NotIn(self.set()?), String::new())
        } else if self.eat_keyword("in") {
            (Op::In(self.set()?), String::new())
        } else if self.eat(">") {
            let n = self.word();
            (
                Op::GreaterThan(n.parse().map_err(|_| LabelSyntax::Integer(n.into()))?),
                String::new(),
            )
        } else if self.eat("<") {
            let n = self.word();
            (
                Op::LessThan(n.parse().map_err(|_| LabelSyntax::Integer(n.into()))?),
                String::new(),
            )
        } else {
            (Op::Exists, String::new())
        };
        Ok(Requirement { key, op, value })
    }

    fn parse(mut self) -> Result<Selector, LabelSyntax> {
        let mut requirements = Vec::new();
        self.skip_ws();
        if self.rest().is_empty() {
            return Ok(Selector::default());
        }
        loop {
            requirements.push(self.requirement()?);
            self.skip_ws();
            if self.rest().is_empty() {
                return Ok(Selector { requirements });
            }
            if !self.eat(",") {
                return Err(LabelSyntax::Comma(self.rest().into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> Value {
        Value::Object(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect(),
        )
    }

    #[test]
    fn label_selector_grammar() {
        let s = Selector::parse_labels("app=web, tier!=db,env in (prod, staging),!legacy,team")
            .unwrap();
        assert_eq!(s.requirements.len(), 5);
        let l = labels(&[("app", "web"), ("env", "prod"), ("team", "x")]);
        assert!(s.matches_labels(Some(&l)));
        let l = labels(&[("app", "web"), ("env", "dev"), ("team", "x")]);
        assert!(!s.matches_labels(Some(&l)));
        let l = labels(&[
            ("app", "web"),
            ("env", "prod"),
            ("team", "x"),
            ("legacy", "1"),
        ]);
        assert!(!s.matches_labels(Some(&l)));
    }

    #[test]
    fn notin_matches_missing_keys_and_in_does_not() {
        let s = Selector::parse_labels("env notin (prod)").unwrap();
        assert!(s.matches_labels(None));
        let s = Selector::parse_labels("env in (prod)").unwrap();
        assert!(!s.matches_labels(None));
    }

    #[test]
    fn keys_may_carry_prefixes_and_values_may_start_with_in() {
        let s = Selector::parse_labels("app.kubernetes.io/name==index").unwrap();
        assert_eq!(s.requirements[0].key, "app.kubernetes.io/name");
        assert_eq!(s.requirements[0].value, "index");
        let s = Selector::parse_labels("inside=1").unwrap();
        assert_eq!(s.requirements[0].key, "inside");
    }

    #[test]
    fn bad_selectors_say_where_they_break() {
        for bad in ["app in prod", "=x", "a=b c=d", "x in (a b)"] {
            let e = Selector::parse_labels(bad).unwrap_err();
            assert!(matches!(e, SelectorError::Label { .. }), "{bad}");
        }
        assert_eq!(
            Selector::parse_labels("a=b c=d").unwrap_err().to_string(),
            "unable to parse requirement: found \"c=d\", expected ',' (in label selector \"a=b c=d\")"
        );
        assert!(Selector::parse_labels("").unwrap().is_empty());
    }

    #[test]
    fn field_selectors_split_on_unescaped_commas() {
        let s = Selector::parse_fields(
            "involvedObject.name=web,involvedObject.namespace==default,type!=Normal",
        )
        .unwrap();
        assert_eq!(s.requirements.len(), 3);
        assert_eq!(s.requirements[2].op, Op::NotEquals);
        let s = Selector::parse_fields(r"metadata.name=a\,b").unwrap();
        assert_eq!(s.requirements[0].value, "a,b");
        assert_eq!(
            Selector::parse_fields("nonsense").unwrap_err().to_string(),
            "invalid selector: 'nonsense'; can't understand 'nonsense'"
        );
    }

    #[test]
    fn structured_selectors() {
        let s = Selector::from_label_selector(&json!({
            "matchLabels": {"app": "web"},
            "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]
        }))
        .unwrap();
        assert!(s.matches_labels(Some(&labels(&[("app", "web")]))));
        assert!(!s.matches_labels(Some(&labels(&[("app", "web"), ("tier", "db")]))));
        assert!(
            Selector::from_label_selector(
                &json!({"matchExpressions": [{"key": "a", "operator": "Maybe"}]})
            )
            .is_err()
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_selectors_never_panic(input in "\\PC{0,40}") {
            let _ = Selector::parse_labels(&input);
            let _ = Selector::parse_fields(&input);
        }
    }
}

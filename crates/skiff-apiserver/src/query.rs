//! A request's query parameters, and the label and field selectors of lists and watches.

use std::collections::HashMap;

use serde_json::Value;
use skiff_api::selectors::Selector;
use skiff_api::{ApiError, fields};

use crate::registry::Kind;

/// The query parameters of a request (last value wins, as upstream's decoder).
pub struct Query(HashMap<String, String>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Query, ApiError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
            .map_err(|e| ApiError::bad_request(format!("malformed query string: {e}")))?;
        Ok(Query(pairs.into_iter().collect()))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("true" | "1"))
    }

    pub fn number<T: std::str::FromStr>(&self, key: &str) -> Result<Option<T>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v
                .parse()
                .map(Some)
                .map_err(|_| ApiError::bad_request(format!("invalid value {v:?} for {key}"))),
        }
    }
}

/// The label and field selectors of a list or watch, checked against the type.
pub fn selectors(kind: &dyn Kind, query: &Query) -> Result<(Selector, Selector), ApiError> {
    let labels = Selector::parse_labels(query.get("labelSelector").unwrap_or(""))?;
    let field_sel = Selector::parse_fields(query.get("fieldSelector").unwrap_or(""))?;
    fields::check_field_selector(kind.selectable_fields(), &field_sel)?;
    Ok((labels, field_sel))
}

/// Whether an object passes both selectors.
pub fn selected(labels: &Selector, field_sel: &Selector, obj: &Value) -> bool {
    labels.matches_labels(obj.get("metadata").and_then(|m| m.get("labels")))
        && fields::matches_fields(field_sel, obj)
}

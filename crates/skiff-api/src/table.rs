//! Server-side printing: `meta.k8s.io/v1 Table`s (what `kubectl get` shows), from a
//! [`Printer`] — each kind's columns and cells, upstream's, live in its module in the
//! server's registry; the cell helpers they share are here. Columns with priority 1 appear
//! only with `-o wide`.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::object::{age, field, field_str, meta_str};

/// One column: (name, type, format, priority, description).
#[derive(Clone, Copy, Debug)]
pub struct Column(
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub u8,
    pub &'static str,
);

impl Column {
    /// A column without a format: (name, type, priority, description).
    pub const fn new(
        name: &'static str,
        ty: &'static str,
        priority: u8,
        description: &'static str,
    ) -> Column {
        Column(name, ty, "", priority, description)
    }
}

pub const NAME: Column = Column(
    "Name",
    "string",
    "name",
    0,
    "Name must be unique within a namespace.",
);
pub const AGE: Column = Column(
    "Age",
    "string",
    "",
    0,
    "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

/// A kind's printing: its Table columns and each object's cells.
pub trait Printer {
    /// The columns, in order (upstream's for the kind). Kinds without printers of their own
    /// get upstream's default: the name and the creation time.
    fn columns(&self) -> Vec<Column> {
        vec![
            NAME,
            Column(
                "Created At",
                "date",
                "",
                0,
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ]
    }

    /// An object's cells, one per column, as printed at `now`.
    fn cells(&self, obj: &Value, _now: OffsetDateTime) -> Vec<Value> {
        vec![
            text(meta_str(obj, "name")),
            text(meta_str(obj, "creationTimestamp")),
        ]
    }

    /// What the cell in `column` is made of when its text depends on the time it is
    /// printed (AGE, and the like), so a row computed once prints right at any time.
    fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
        (column == "Age").then(|| Timed::Age(time_of(meta_str(obj, "creationTimestamp"))))
    }
}

/// A timestamp field's time, if it holds one.
pub fn time_of(at: Option<&str>) -> Option<OffsetDateTime> {
    at.and_then(crate::object::parse_time)
}

/// The cell of an object's age at `now` (AGE).
pub fn age_cell(obj: &Value, now: OffsetDateTime) -> Value {
    Value::String(age(meta_str(obj, "creationTimestamp"), now))
}

/// The `columnDefinitions` of a kind's Table.
pub fn column_definitions(printer: &(impl Printer + ?Sized)) -> Value {
    printer
        .columns()
        .into_iter()
        .map(|Column(name, ty, format, priority, description)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect()
}

/// One Table row for an object: its cells and the object's metadata (kubectl needs it for
/// `-A`'s NAMESPACE column and `--show-labels`).
pub fn row(printer: &(impl Printer + ?Sized), obj: &Value, now: OffsetDateTime) -> Value {
    let metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    json!({
        "cells": printer.cells(obj, now),
        "object": {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
        },
    })
}

/// A whole Table for a list of objects.
pub fn table(
    printer: &(impl Printer + ?Sized),
    objects: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
    now: OffsetDateTime,
) -> Value {
    let metadata = list_meta(resource_version, continue_token);
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": metadata,
        "columnDefinitions": column_definitions(printer),
        "rows": objects.iter().map(|o| row(printer, o, now)).collect::<Vec<_>>(),
    })
}

/// A cell whose text depends on the time it is printed.
#[derive(Clone, Debug)]
pub enum Timed {
    /// How long ago (`5m`), or `<unknown>`.
    Age(Option<OffsetDateTime>),
    /// A restart count and when the last restart was (`2 (5m ago)`).
    Restarts(i64, Option<OffsetDateTime>),
}

/// A list's `ListMeta`: its revision, and where the next page starts when there is one.
pub fn list_meta(resource_version: &str, continue_token: Option<&str>) -> Value {
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = c.into();
    }
    meta
}

const OBJECT_META: &str = ".apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// A row computed once, when the object changed: its cells, with the time-dependent ones
/// (AGE, RESTARTS' "ago", events' LAST/FIRST SEEN) rendered when printed, and its metadata
/// (without managedFields, which no table shows) as JSON.
#[derive(Clone, Debug)]
pub struct PrecomputedRow {
    cells: Vec<Value>,
    timed: Vec<(usize, Timed)>,
    metadata: Vec<u8>,
}

impl PrecomputedRow {
    pub fn new(printer: &(impl Printer + ?Sized), obj: &Value) -> PrecomputedRow {
        let cells = printer.cells(obj, OffsetDateTime::UNIX_EPOCH);
        let timed = printer
            .columns()
            .iter()
            .enumerate()
            .filter_map(|(i, Column(name, ..))| Some((i, printer.timed(name, obj)?)))
            .collect();
        let mut metadata = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
        if let Some(m) = metadata.as_object_mut() {
            m.remove("managedFields");
        }
        PrecomputedRow {
            cells,
            timed,
            metadata: {
                let mut out = Vec::new();
                crate::wire_json::write_as(&mut out, &metadata, OBJECT_META);
                out
            },
        }
    }

    pub fn cells_at(&self, now: OffsetDateTime) -> Vec<Value> {
        let mut cells = self.cells.clone();
        for (i, t) in &self.timed {
            cells[*i] = match t {
                Timed::Age(Some(at)) => {
                    crate::object::human_duration((now - *at).whole_seconds()).into()
                }
                Timed::Age(None) => "<unknown>".into(),
                Timed::Restarts(count, last) => restarts_cell(*count, *last, now),
            };
        }
        cells
    }
}

/// A Table of precomputed rows, as JSON bytes.
pub fn table_json_from_rows<'a>(
    printer: &(impl Printer + ?Sized),
    rows: impl Iterator<Item = &'a PrecomputedRow>,
    resource_version: &str,
    continue_token: Option<&str>,
    now: OffsetDateTime,
) -> Vec<u8> {
    let mut out = Vec::new();
    let head = list_meta(resource_version, continue_token);
    out.extend_from_slice(
        format!(
            r#"{{"kind":"Table","apiVersion":"meta.k8s.io/v1","metadata":{head},"columnDefinitions":{},"rows":["#,
            column_definitions(printer)
        )
        .as_bytes(),
    );
    for (i, row) in rows.enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"cells":"#);
        serde_json::to_writer(&mut out, &row.cells_at(now)).expect("JSON values serialize");
        out.extend_from_slice(br#","object":{"kind":"PartialObjectMetadata","apiVersion":"meta.k8s.io/v1","metadata":"#);
        out.extend_from_slice(&row.metadata);
        out.extend_from_slice(b"}}");
    }
    out.extend_from_slice(b"]}");
    out
}

/// A text cell; empty when there is no text.
pub fn text(v: Option<&str>) -> Value {
    Value::String(v.unwrap_or_default().to_string())
}

/// A number field, 0 when missing.
pub fn int(obj: &Value, path: &[&str]) -> i64 {
    field(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

/// An array field's items, none when missing.
pub fn arr<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    field(obj, path)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// How many entries a map or list field has.
pub fn len_of(obj: &Value, key: &str) -> usize {
    match obj.get(key) {
        Some(Value::Object(m)) => m.len(),
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    }
}

/// `<none>` for an empty cell, as upstream prints one.
pub fn none_if_empty(s: String) -> Value {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.into()
    }
}

/// `a=b,c in (x,y),!d` for a `metav1.LabelSelector`, or `a=b` for a plain label map: how
/// upstream prints selectors (the Selector columns, `Scale.status.selector`).
pub fn format_label_selector(sel: Option<&Value>) -> String {
    let Some(sel) = sel else {
        return String::new();
    };
    let labels = sel.get("matchLabels").unwrap_or(sel);
    // Sorted by key, as upstream formats label sets.
    let mut pairs: Vec<(&String, &str)> = labels
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
                .collect()
        })
        .unwrap_or_default();
    pairs.sort();
    let mut parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
    for e in arr(sel, &["matchExpressions"]) {
        let key = field_str(e, &["key"]).unwrap_or_default();
        let values: Vec<&str> = arr(e, &["values"])
            .iter()
            .filter_map(Value::as_str)
            .collect();
        parts.push(match field_str(e, &["operator"]) {
            Some("In") => format!("{key} in ({})", values.join(",")),
            Some("NotIn") => format!("{key} notin ({})", values.join(",")),
            Some("Exists") => key.to_string(),
            Some("DoesNotExist") => format!("!{key}"),
            _ => continue,
        });
    }
    parts.join(",")
}

/// At most three entries, then `+ N more...`, as upstream prints address lists.
pub fn truncated_list(items: &[&str]) -> String {
    if items.len() <= 3 {
        return items.join(",");
    }
    format!("{} + {} more...", items[..3].join(","), items.len() - 3)
}

/// RESTARTS: `2`, or `2 (5m ago)` when the last restart's time is known.
pub fn restarts_cell(restarts: i64, last: Option<OffsetDateTime>, now: OffsetDateTime) -> Value {
    match last {
        Some(t) => format!(
            "{restarts} ({} ago)",
            crate::object::human_duration((now - t).whole_seconds())
        )
        .into(),
        None => restarts.to_string().into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::parse_time;

    fn now() -> OffsetDateTime {
        parse_time("2026-11-25T12:00:00Z").unwrap()
    }

    /// A printer with a time-dependent column besides AGE.
    struct Sample;

    impl Printer for Sample {
        fn columns(&self) -> Vec<Column> {
            vec![NAME, Column::new("Seen", "string", 0, "When"), AGE]
        }

        fn cells(&self, obj: &Value, now: OffsetDateTime) -> Vec<Value> {
            let seen = time_of(obj["seen"].as_str());
            let seen = seen.map_or("<unknown>".into(), |t| {
                crate::object::human_duration((now - t).whole_seconds())
            });
            vec![text(meta_str(obj, "name")), seen.into(), age_cell(obj, now)]
        }

        fn timed(&self, column: &str, obj: &Value) -> Option<Timed> {
            match column {
                "Seen" => Some(Timed::Age(time_of(obj["seen"].as_str()))),
                "Age" => Some(Timed::Age(time_of(meta_str(obj, "creationTimestamp")))),
                _ => None,
            }
        }
    }

    #[test]
    fn precomputed_rows_print_like_fresh_ones_at_any_time() {
        let obj = json!({
            "metadata": {"name": "p", "creationTimestamp": "2026-11-25T11:00:00Z", "managedFields": [{"manager": "x"}]},
            "seen": "2026-11-25T11:59:00Z",
        });
        let row = PrecomputedRow::new(&Sample, &obj);
        for later in [0, 3600, 86400 * 3] {
            let at = now() + time::Duration::seconds(later);
            let table: Value = serde_json::from_slice(&table_json_from_rows(
                &Sample,
                std::iter::once(&row),
                "5",
                None,
                at,
            ))
            .unwrap();
            let mut fresh = super::table(&Sample, std::slice::from_ref(&obj), "5", None, at);
            fresh["rows"][0]["object"]["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            assert_eq!(table, fresh, "at +{later}s");
        }
        assert_eq!(row.cells_at(now())[1], "60s");
    }

    #[test]
    fn kinds_without_printers_show_name_and_creation_time() {
        struct Plain;
        impl Printer for Plain {}
        let obj = json!({"metadata": {"name": "x", "creationTimestamp": "2026-11-25T11:00:00Z"}});
        assert_eq!(
            row(&Plain, &obj, now())["cells"],
            json!(["x", "2026-11-25T11:00:00Z"])
        );
        assert_eq!(column_definitions(&Plain)[1]["type"], "date");
    }

    #[test]
    fn selectors_print_as_upstream() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"},
            "matchExpressions": [{"key": "t", "operator": "In", "values": ["x", "y"]},
                                 {"key": "g", "operator": "DoesNotExist"}]});
        assert_eq!(format_label_selector(Some(&sel)), "a=1,b=2,t in (x,y),!g");
        assert_eq!(
            format_label_selector(Some(&json!({"app": "web"}))),
            "app=web"
        );
        assert_eq!(
            truncated_list(&["a", "b", "c", "d", "e"]),
            "a,b,c + 2 more..."
        );
    }
}

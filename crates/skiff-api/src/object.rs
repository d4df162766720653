//! Reading and writing the parts of an object every kind shares (`metadata`), and the time
//! formats the API uses. Objects are `serde_json::Value`s: the server stores and serves every
//! kind the same way, and kind-specific code reaches into the fields it knows.

use serde_json::{Map, Value};
use time::OffsetDateTime;

pub use skiff_apimachinery::time::{format_micro_time, format_time, now_rfc3339, parse_time};

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> Option<&str> {
    meta_str(obj, "name").filter(|n| !n.is_empty())
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|n| !n.is_empty())
}

/// `metadata`, created as an empty object if missing or not an object.
pub fn metadata_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.is_object() {
        *obj = Value::Object(Map::new());
    }
    let map = obj.as_object_mut().expect("made an object above");
    let meta = map
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !meta.is_object() {
        *meta = Value::Object(Map::new());
    }
    meta.as_object_mut().expect("made an object above")
}

/// A nested field by path, such as `["spec", "nodeName"]`.
pub fn field<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, k| v.get(k))
}

pub fn field_str<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    field(obj, path)?.as_str()
}

/// The strings of a list of strings (none when it is missing or not a list).
pub fn string_list(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|items| {
            items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Sets a nested field, creating objects along the way.
pub fn set_field(obj: &mut Value, path: &[&str], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for k in parents {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        cur = cur
            .as_object_mut()
            .expect("made an object above")
            .entry(*k)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    if !cur.is_object() {
        *cur = Value::Object(Map::new());
    }
    cur.as_object_mut()
        .expect("made an object above")
        .insert((*last).to_string(), value);
}

/// Upstream's `duration.HumanDuration`, the AGE column: `45s`, `3m12s`, `15m`, `5h3m`, `3d4h`,
/// `2y30d` — precise when recent, coarser as it grows.
pub fn human_duration(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 120 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 180 {
        return format!("{minutes}m");
    }
    let hours = minutes / 60;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let d = (hours / 24) % 365;
        return if d == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{d}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

/// The age of a timestamp as the AGE column prints it, `<unknown>` when absent.
pub fn age(timestamp: Option<&str>, now: OffsetDateTime) -> String {
    match timestamp.and_then(parse_time) {
        Some(t) => human_duration((now - t).whole_seconds()),
        None => "<unknown>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn human_durations_match_upstream() {
        for (secs, want) in [
            (0, "0s"),
            (119, "119s"),
            (120, "2m"),
            (192, "3m12s"),
            (600, "10m"),
            (179 * 60, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 180, "5h3m"),
            (47 * 3600, "47h"),
            (3 * 86400 + 4 * 3600, "3d4h"),
            (100 * 86400, "100d"),
            (2 * 365 * 86400 + 30 * 86400, "2y30d"),
            (9 * 365 * 86400, "9y"),
            (-5, "<invalid>"),
        ] {
            assert_eq!(human_duration(secs), want, "{secs}s");
        }
    }

    #[test]
    fn timestamps_round_trip() {
        let t = parse_time("2026-11-25T11:14:41Z").unwrap();
        assert_eq!(format_time(t), "2026-11-25T11:14:41Z");
        assert!(format_micro_time(t).ends_with("41.000000Z"));
        assert_eq!(
            age(
                Some("2026-11-25T11:14:41Z"),
                t + time::Duration::seconds(90)
            ),
            "90s"
        );
        assert_eq!(age(None, t), "<unknown>");
    }

    #[test]
    fn set_field_builds_the_path() {
        let mut v = json!({"metadata": {"name": "a"}});
        set_field(&mut v, &["status", "phase"], json!("Active"));
        assert_eq!(field_str(&v, &["status", "phase"]), Some("Active"));
        assert_eq!(name(&v), Some("a"));
        metadata_mut(&mut v).insert("namespace".into(), json!("ns"));
        assert_eq!(namespace(&v), Some("ns"));
    }
}

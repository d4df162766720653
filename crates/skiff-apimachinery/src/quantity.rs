//! Resource quantities (`100m`, `1.5`, `128Mi`, `1e3`) as numbers: CPU in millicores,
//! everything else in whole units (bytes, pods), rounded up as upstream rounds requests.

/// The value of a quantity, or `None` if it is not one.
pub fn parse(q: &str) -> Option<f64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (number, suffix) = q.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * scale)
}

/// CPU in millicores (`250m` → 250, `2` → 2000).
pub fn millis(q: &str) -> Option<i64> {
    parse(q).map(|v| (v * 1000.0).ceil() as i64)
}

/// A whole-unit quantity (`1Gi` → 1073741824).
pub fn units(q: &str) -> Option<i64> {
    parse(q).map(|v| v.ceil() as i64)
}

/// A quantity in milli-units written back as Kubernetes writes one: whole numbers bare,
/// fractions in millis (`2500m`); with `binary`, whole numbers in the largest binary unit
/// that divides them (`256Mi`, as memory is written).
pub fn from_millis(m: i64, binary: bool) -> String {
    if m % 1000 != 0 {
        return format!("{m}m");
    }
    let units = m / 1000;
    if binary {
        for (suffix, size) in [
            ("Ei", 1i64 << 60),
            ("Pi", 1 << 50),
            ("Ti", 1 << 40),
            ("Gi", 1 << 30),
            ("Mi", 1 << 20),
            ("Ki", 1 << 10),
        ] {
            if units != 0 && units % size == 0 {
                return format!("{}{suffix}", units / size);
            }
        }
    }
    units.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_kubernetes_uses() {
        assert_eq!(millis("100m"), Some(100));
        assert_eq!(millis("1.5"), Some(1500));
        assert_eq!(millis("2"), Some(2000));
        assert_eq!(units("128Mi"), Some(128 * 1024 * 1024));
        assert_eq!(units("1G"), Some(1_000_000_000));
        assert_eq!(units("1e3"), Some(1000));
        assert_eq!(units("110"), Some(110));
        assert_eq!(units("12Q"), None);
        assert_eq!(units("abc"), None);
        assert_eq!(from_millis(2500, false), "2500m");
        assert_eq!(from_millis(2000, false), "2");
        assert_eq!(from_millis(1200 * 1024 * 1024 * 1000, true), "1200Mi");
        assert_eq!(from_millis(3 * 1000, true), "3");
        assert_eq!(from_millis(0, true), "0");
    }
}

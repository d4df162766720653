//! Cron schedules as CronJobs spell them (upstream reads them with robfig/cron's standard
//! parser): five fields — minute, hour, day of month, month, day of week — each `*`, a
//! number, a range `a-b`, a list `a,b`, a step `*/n` or `a-b/n`, months and weekdays also by
//! their English three-letter names; `?` as `*` in the day fields; or a descriptor
//! (`@yearly`, `@annually`, `@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`,
//! `@every <duration>`). Errors read as upstream's.

/// A parsed schedule: for each field, the set of values it matches (bit `n` = value `n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    Fields {
        minutes: u64,
        hours: u32,
        days_of_month: u32,
        months: u16,
        days_of_week: u8,
    },
    /// `@every 1h30m`: a fixed interval, in seconds.
    Every(u64),
}

/// Why a schedule does not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CronError(String);

struct Field {
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: Field = Field {
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: Field = Field {
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: Field = Field {
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: Field = Field {
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
const DAY_OF_WEEK: Field = Field {
    min: 0,
    max: 6,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

/// Parses a CronJob's `spec.schedule`.
pub fn parse(spec: &str) -> Result<Schedule, CronError> {
    let spec = spec.trim();
    if spec.is_empty() {
        return Err(CronError("empty spec string".into()));
    }
    if let Some(descriptor) = spec.strip_prefix('@') {
        return parse_descriptor(descriptor);
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(CronError(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        )));
    }
    Ok(Schedule::Fields {
        minutes: bits(fields[0], &MINUTE)?,
        hours: bits(fields[1], &HOUR)? as u32,
        days_of_month: bits(star_or_question(fields[2]), &DAY_OF_MONTH)? as u32,
        months: bits(fields[3], &MONTH)? as u16,
        days_of_week: {
            // 7 is Sunday too.
            let b = bits(
                star_or_question(fields[4]),
                &Field {
                    max: 7,
                    ..DAY_OF_WEEK
                },
            )?;
            ((b | (b >> 7)) & 0x7f) as u8
        },
    })
}

/// `?` means `*` in the day fields.
fn star_or_question(field: &str) -> &str {
    if field == "?" { "*" } else { field }
}

fn parse_descriptor(descriptor: &str) -> Result<Schedule, CronError> {
    let every = |m: &str, h: &str, dom: &str, mon: &str, dow: &str| {
        parse(&format!("{m} {h} {dom} {mon} {dow}"))
    };
    match descriptor {
        "yearly" | "annually" => every("0", "0", "1", "1", "*"),
        "monthly" => every("0", "0", "1", "*", "*"),
        "weekly" => every("0", "0", "*", "*", "0"),
        "daily" | "midnight" => every("0", "0", "*", "*", "*"),
        "hourly" => every("0", "*", "*", "*", "*"),
        d => match d.strip_prefix("every ") {
            Some(duration) => {
                let seconds = go_duration_seconds(duration.trim()).ok_or_else(|| {
                    CronError(format!("failed to parse duration @{d}: invalid duration"))
                })?;
                Ok(Schedule::Every(seconds.max(1)))
            }
            None => Err(CronError(format!("unrecognized descriptor: @{d}"))),
        },
    }
}

/// A Go duration (`1h30m`, `90s`, `2h`) in whole seconds.
fn go_duration_seconds(s: &str) -> Option<u64> {
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Some(total as u64)
}

/// The values one field matches, as bits.
fn bits(field: &str, f: &Field) -> Result<u64, CronError> {
    let mut out = 0u64;
    for part in field.split(',') {
        out |= range_bits(part, f)?;
    }
    Ok(out)
}

fn range_bits(part: &str, f: &Field) -> Result<u64, CronError> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s.parse().map_err(|_| {
                CronError(format!(
                    "failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"
                ))
            })?;
            (r, Some(step))
        }
        None => (part, None),
    };
    let (start, end) = if range == "*" {
        (f.min, f.max)
    } else {
        match range.split_once('-') {
            Some((a, b)) => (value(a, f)?, value(b, f)?),
            None => {
                let v = value(range, f)?;
                // `n/step` runs from n to the field's end, as robfig's parser reads it.
                (v, if step.is_some() { f.max } else { v })
            }
        }
    };
    if start < f.min {
        return Err(CronError(format!(
            "beginning of range ({start}) below minimum ({}): {part}",
            f.min
        )));
    }
    if end > f.max {
        return Err(CronError(format!(
            "end of range ({end}) above maximum ({}): {part}",
            f.max
        )));
    }
    if start > end {
        return Err(CronError(format!(
            "beginning of range ({start}) beyond end of range ({end}): {part}"
        )));
    }
    let step = step.unwrap_or(1);
    if step == 0 {
        return Err(CronError(format!(
            "step of range should be a positive number: {part}"
        )));
    }
    Ok((start..=end)
        .step_by(step as usize)
        .fold(0, |b, v| b | 1 << v))
}

fn value(s: &str, f: &Field) -> Result<u32, CronError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + f.min);
    }
    s.parse().map_err(|_| {
        CronError(format!(
            "failed to parse int from {s}: strconv.Atoi: parsing {s:?}: invalid syntax"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(spec: &str) -> (u64, u32, u32, u16, u8) {
        match parse(spec).unwrap() {
            Schedule::Fields {
                minutes,
                hours,
                days_of_month,
                months,
                days_of_week,
            } => (minutes, hours, days_of_month, months, days_of_week),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn standard_fields_ranges_steps_and_names() {
        let (m, h, dom, mon, dow) = fields("*/15 9-17 1,15 jan-mar mon-fri");
        assert_eq!(m, 1 | 1 << 15 | 1 << 30 | 1 << 45);
        assert_eq!(h, (9..=17).fold(0, |b, v| b | 1 << v));
        assert_eq!(dom, 1 << 1 | 1 << 15);
        assert_eq!(mon, 1 << 1 | 1 << 2 | 1 << 3);
        assert_eq!(dow, 0b0111110);
        assert_eq!(fields("0 0 * * 7").4, 1, "7 is Sunday");
        assert_eq!(fields("5/20 * ? * *").0, 1 << 5 | 1 << 25 | 1 << 45);
        assert_eq!(parse("@daily"), parse("0 0 * * *"));
        assert_eq!(parse("@every 1h30m").unwrap(), Schedule::Every(5400));
    }

    #[test]
    fn bad_schedules_say_why_as_upstream() {
        let err = |s: &str| parse(s).unwrap_err().to_string();
        assert_eq!(err("bad"), "expected exactly 5 fields, found 1: [bad]");
        assert_eq!(
            err("61 * * * *"),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            err("* * 0 * *"),
            "beginning of range (0) below minimum (1): 0"
        );
        assert_eq!(
            err("x * * * *"),
            "failed to parse int from x: strconv.Atoi: parsing \"x\": invalid syntax"
        );
        assert_eq!(err("@fortnightly"), "unrecognized descriptor: @fortnightly");
        assert_eq!(err(""), "empty spec string");
    }
}

//! Times as the API writes them: `metav1.Time` (RFC 3339, UTC, whole seconds) and
//! `metav1.MicroTime` (microseconds).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The current time as the API writes timestamps: RFC 3339 in UTC, whole seconds.
pub fn now_rfc3339() -> String {
    format_time(OffsetDateTime::now_utc())
}

/// RFC 3339 in UTC with whole seconds (`metav1.Time`).
pub fn format_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// RFC 3339 in UTC with microseconds (`metav1.MicroTime`, used by leases and new events).
pub fn format_micro_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    format!(
        "{}.{:06}Z",
        format_time(t).trim_end_matches('Z'),
        t.microsecond()
    )
}

pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

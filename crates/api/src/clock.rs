//! Wall-clock time as the API writes it (RFC 3339 in UTC), and the stream timing both ends agree
//! on. The one place the wire's times are formatted and parsed.

use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How often a quiet stream sends a keep-alive comment.
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(15);

/// How long a client waits on a silent stream before it reconnects: three missed keep-alives.
pub const IDLE_TIMEOUT: Duration = idle_timeout_for(KEEP_ALIVE_INTERVAL);

/// How often the active-requests stream sends a heartbeat when nothing changes (by default;
/// the server can be told otherwise).
pub const REQUESTS_HEARTBEAT: Duration = Duration::from_secs(30);

/// The idle timeout for a stream that sends something at least every `keep_alive`: three
/// missed ones mean a dead link.
pub const fn idle_timeout_for(keep_alive: Duration) -> Duration {
    keep_alive.saturating_mul(3)
}

/// Now, as RFC 3339 UTC with sub-second digits.
#[cfg(not(target_arch = "wasm32"))]
pub fn now_rfc3339() -> String {
    format_rfc3339(OffsetDateTime::now_utc())
}

/// A time as the API writes it.
pub fn format_rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339)
        .unwrap_or_else(|_| String::from("1970-01-01T00:00:00Z"))
}

/// Parses an RFC 3339 time from the wire; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// Seconds since the Unix epoch of a time a server wrote: RFC 3339, or the ISO 8601 forms other
/// servers use — Python's `isoformat()` without a zone (read as UTC) and a space instead of the
/// `T` (as PostgreSQL prints a `timestamptz`). `None` for anything else.
pub fn unix_seconds(text: &str) -> Option<f64> {
    let text = text.trim();
    let at = parse_rfc3339(text).or_else(|| {
        let normalized = text.replacen(' ', "T", 1);
        // A zone PostgreSQL prints as `+00` lacks RFC 3339's minutes.
        let with_minutes = match normalized.rsplit_once(['+', '-']) {
            Some((_, zone)) if zone.len() == 2 && zone.bytes().all(|b| b.is_ascii_digit()) => {
                format!("{normalized}:00")
            }
            _ => normalized.clone(),
        };
        parse_rfc3339(&with_minutes).or_else(|| parse_rfc3339(&format!("{normalized}Z")))
    })?;
    #[allow(clippy::cast_precision_loss)] // Nanoseconds since 1970 fit an f64 to a microsecond.
    Some(at.unix_timestamp_nanos() as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_reads_back_as_written_and_junk_is_none() {
        let at = parse_rfc3339("2026-12-01T08:29:01.25Z").unwrap();
        assert_eq!(format_rfc3339(at), "2026-12-01T08:29:01.25Z");
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert!(IDLE_TIMEOUT >= KEEP_ALIVE_INTERVAL * 3);
    }

    #[test]
    fn unix_seconds_reads_the_forms_servers_write() {
        let expected = 1_772_366_400.25; // 2026-03-01T12:00:00.25Z
        for text in [
            "2026-03-01T12:00:00.25Z",
            "2026-03-01T12:00:00.250000",
            "2026-03-01 12:00:00.25+00:00",
            "2026-03-01 12:00:00.25+00",
            "2026-03-01T14:00:00.25+02:00",
        ] {
            let got = unix_seconds(text).unwrap_or_else(|| panic!("{text} not read"));
            assert!((got - expected).abs() < 1e-6, "{text}: {got}");
        }
        assert_eq!(unix_seconds("2026-03-01"), None);
        assert_eq!(unix_seconds("soon"), None);
    }
}

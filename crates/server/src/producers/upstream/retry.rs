//! When a step's request is tried again: 429, 5xx, refused connections, cut or silent streams;
//! how long to wait, honouring `Retry-After`.

use std::time::Duration;

/// Tries per step, the first included.
pub const MAX_TRIES: u32 = 3;

/// The longest `Retry-After` honoured; a server asking for more fails the step at once.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Why one try did not produce the step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryFailure {
    /// Worth another try: overload, a server error, a refused or cut connection, silence.
    Transient {
        /// What happened, for people (the upstream's own message where it gave one).
        message: String,
        /// How long the server asked us to wait.
        retry_after: Option<Duration>,
    },
    /// Trying again would fail the same way: a 4xx, an error frame, a refused request.
    Final(String),
}

/// The wait before try `next_try` (2 or 3): the server's `Retry-After` when it gave one,
/// else 1 s then 2 s. `None` when the server asks for more than [`MAX_RETRY_AFTER`].
pub fn wait_before(next_try: u32, retry_after: Option<Duration>) -> Option<Duration> {
    let backoff = Duration::from_secs(1 << next_try.saturating_sub(2).min(4));
    match retry_after {
        Some(wait) if wait > MAX_RETRY_AFTER => None,
        Some(wait) => Some(wait),
        None => Some(backoff),
    }
}

/// Whether an HTTP status is worth another try.
pub fn transient_status(status: u16) -> bool {
    status == 408 || status == 429 || (500..=599).contains(&status)
}

/// Reads `Retry-After`: seconds (fractions accepted, as some servers send them) or an HTTP
/// date, relative to `now`.
pub fn parse_retry_after(value: &str, now: time::OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds));
    }
    let at =
        time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    let wait = (at - now).as_seconds_f64();
    Some(Duration::from_secs_f64(wait.max(0.0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_as_seconds_or_a_date() {
        let now = time::OffsetDateTime::parse(
            "2026-12-02T10:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("0.25", now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 10:00:07 GMT", now),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            parse_retry_after("Wed, 02 Dec 2026 09:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn the_wait_honours_the_server_up_to_a_limit() {
        assert_eq!(wait_before(2, None), Some(Duration::from_secs(1)));
        assert_eq!(wait_before(3, None), Some(Duration::from_secs(2)));
        assert_eq!(
            wait_before(2, Some(Duration::from_millis(300))),
            Some(Duration::from_millis(300))
        );
        assert_eq!(wait_before(2, Some(Duration::from_secs(3600))), None);
        assert!(transient_status(429) && transient_status(503) && !transient_status(400));
    }
}

//! Small formatting helpers for human output.

use std::time::Duration;

use runboard_api::clock::parse_rfc3339;

/// `text` cut to `max_chars` characters with an ellipsis, on one line.
pub fn one_line(text: &str, max_chars: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max_chars {
        flat
    } else {
        let mut cut: String = flat.chars().take(max_chars.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// The time between two RFC 3339 times, when both parse and are in order.
pub fn between(start: Option<&str>, end: Option<&str>) -> Option<Duration> {
    let start = parse_rfc3339(start?)?;
    let end = parse_rfc3339(end?)?;
    Duration::try_from(end - start).ok()
}

/// The time of day of an RFC 3339 time, `HH:MM:SS.mmm`, or the text as it is.
pub fn time_of_day(text: &str) -> String {
    parse_rfc3339(text).map_or_else(
        || text.to_owned(),
        |time| {
            format!(
                "{:02}:{:02}:{:02}.{:03}",
                time.hour(),
                time.minute(),
                time.second(),
                time.millisecond()
            )
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_flattens_and_cuts() {
        assert_eq!(one_line("a\nb", 10), "a b");
        assert_eq!(one_line("héllo wörld", 6), "héllo…");
    }

    #[test]
    fn between_two_times() {
        assert_eq!(
            between(Some("2026-11-21T05:30:00Z"), Some("2026-11-21T05:30:02.5Z")),
            Some(Duration::from_millis(2500))
        );
        assert_eq!(
            between(Some("nonsense"), Some("2026-11-21T05:30:02Z")),
            None
        );
    }
}

//! `/metrics` in the Prometheus text format (0.0.4), for clients that ask for it (`Accept:
//! text/plain`) rather than `OpenMetrics`: Prometheus's own `promtool check metrics`, and
//! scrapers that predate `OpenMetrics`.
//!
//! The page is made in `OpenMetrics` and rewritten: the two formats differ, for what runboard
//! exposes, only in how a counter's family is named (`OpenMetrics` names it without `_total`,
//! the text format with), in `# UNIT` lines and in the closing `# EOF`.

use std::collections::HashSet;

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Whether an `Accept` header asks for the text format rather than `OpenMetrics`: it names
/// `text/plain` and not `application/openmetrics-text` (Prometheus asks for both, preferring
/// `OpenMetrics`; `curl` and browsers ask for anything and get `OpenMetrics`).
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|accept| {
        let accept = accept.to_ascii_lowercase();
        accept.contains("text/plain") && !accept.contains("application/openmetrics-text")
    })
}

/// An `OpenMetrics` page rewritten in the text format.
pub fn from_openmetrics(page: &str) -> String {
    let counters: HashSet<&str> = page
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_once(' '))
        .filter(|(_, kind)| *kind == "counter")
        .map(|(name, _)| name)
        .collect();
    let mut text = String::with_capacity(page.len());
    for line in page.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let described = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|prefix| Some((prefix, line.strip_prefix(prefix)?)));
        match described {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                text.push_str(prefix);
                text.push_str(name);
                if counters.contains(name) {
                    text.push_str("_total");
                }
                text.push(' ');
                text.push_str(tail);
            }
            None => text.push_str(line),
        }
        text.push('\n');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
# HELP runboard_tokens Output tokens generated, per model.
# TYPE runboard_tokens counter
runboard_tokens_total{gen_ai_request_model=\"m\"} 60
# HELP gen_ai_server_time_to_first_token_seconds Time to the first token.
# TYPE gen_ai_server_time_to_first_token_seconds histogram
# UNIT gen_ai_server_time_to_first_token_seconds seconds
gen_ai_server_time_to_first_token_seconds_sum 0.25
# HELP runboard_subscribers Event streams open now.
# TYPE runboard_subscribers gauge
runboard_subscribers 3
# EOF
";

    #[test]
    fn counters_are_named_with_total_and_units_and_the_end_marker_go() {
        assert_eq!(
            from_openmetrics(PAGE),
            "\
# HELP runboard_tokens_total Output tokens generated, per model.
# TYPE runboard_tokens_total counter
runboard_tokens_total{gen_ai_request_model=\"m\"} 60
# HELP gen_ai_server_time_to_first_token_seconds Time to the first token.
# TYPE gen_ai_server_time_to_first_token_seconds histogram
gen_ai_server_time_to_first_token_seconds_sum 0.25
# HELP runboard_subscribers Event streams open now.
# TYPE runboard_subscribers gauge
runboard_subscribers 3
"
        );
    }

    #[test]
    fn only_a_plain_text_request_gets_the_text_format() {
        assert!(wanted(Some("text/plain; version=0.0.4")));
        assert!(!wanted(Some(
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        )));
        assert!(!wanted(Some("*/*")));
        assert!(!wanted(None));
    }
}

//! Flags that take seconds. A number is only taken when a `Duration`, and the clock times it
//! is added to, can hold it: `1e300` or `inf` is refused with a message at the start instead
//! of a panic later.

/// The longest span any seconds flag takes: ten years, far beyond any sensible timeout and
/// far within what a `Duration` added to the current time can hold.
const MAX_SECS: f64 = 10.0 * 365.0 * 86_400.0;

/// Seconds above 0 (fractions allowed), at most ten years.
pub fn positive_secs(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if secs > 0.0 && secs <= MAX_SECS => Ok(secs),
        _ => Err(format!(
            "expected seconds above 0 and at most {MAX_SECS} (ten years), not {text:?}"
        )),
    }
}

/// Seconds from 0 (fractions allowed), at most ten years.
#[cfg(feature = "gui")]
pub fn secs_from_zero(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) if (0.0..=MAX_SECS).contains(&secs) => Ok(secs),
        _ => Err(format!(
            "expected seconds from 0 to {MAX_SECS} (ten years), not {text:?}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_a_duration_cannot_hold_are_refused() {
        for text in ["1e300", "inf", "NaN", "-1", "0", "", "3e8x", "315360001"] {
            assert!(positive_secs(text).is_err(), "{text}");
        }
        assert_eq!(positive_secs("0.25"), Ok(0.25));
        assert_eq!(positive_secs("315360000"), Ok(315_360_000.0));
    }

    #[cfg(feature = "gui")]
    #[test]
    fn seconds_from_zero_take_zero_and_refuse_the_rest_alike() {
        assert_eq!(secs_from_zero("0"), Ok(0.0));
        assert!(secs_from_zero("1e300").is_err());
        assert!(secs_from_zero("-0.5").is_err());
    }
}

//! Numbers and tables for people, shared by the server's narration, the CLI and the console.

/// `512 B`, `4.9 GiB`: a size in binary units, one decimal above bytes.
pub fn bytes(count: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if count < 1024 {
        return format!("{count} B");
    }
    #[allow(clippy::cast_precision_loss)] // Display only.
    let mut value = count as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `850 ms`, `12.4 s`, `3 m 05 s`, `2 h 01 m`: a duration for people, in the CLI and the console.
pub fn duration(duration: std::time::Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 3600 {
        format!("{} h {:02} m", secs / 3600, secs % 3600 / 60)
    } else if secs >= 60 {
        format!("{} m {:02} s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{:.1} s", duration.as_secs_f64())
    } else {
        format!("{:.0} ms", duration.as_secs_f64() * 1000.0)
    }
}

/// [`duration`] of a number of seconds; a negative or non-finite one counts as zero.
pub fn seconds(secs: f64) -> String {
    let secs = if secs.is_finite() { secs.max(0.0) } else { 0.0 };
    duration(std::time::Duration::try_from_secs_f64(secs).unwrap_or(std::time::Duration::MAX))
}

/// A text table: a header row, a rule, then the rows, with columns separated by `│` and padded
/// to their widest cell (counted in characters, so accented names line up).
pub fn text_table<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let padded: Vec<String> = cells
            .zip(widths)
            .map(|(cell, width)| format!("{cell}{}", " ".repeat(width - cell.chars().count())))
            .collect();
        padded.join(" │ ").trim_end().to_owned()
    };
    let mut out = line(&mut headers.iter().copied());
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
    out.push_str(&rule.join("─┼─"));
    for row in rows {
        out.push('\n');
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_millis(850)), "850 ms");
        assert_eq!(duration(Duration::from_millis(12_440)), "12.4 s");
        assert_eq!(duration(Duration::from_secs(185)), "3 m 05 s");
        assert_eq!(duration(Duration::from_secs(121 * 60)), "2 h 01 m");
        assert_eq!(seconds(0.85), "850 ms");
        assert_eq!(seconds(12.44), "12.4 s");
        assert_eq!(seconds(185.0), "3 m 05 s");
        assert_eq!(seconds(-1.0), "0 ms");
        assert_eq!(seconds(f64::NAN), "0 ms");
    }

    #[test]
    fn sizes_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1024), "1.0 KiB");
        assert_eq!(
            bytes(5 * 1024 * 1024 * 1024 + 1024 * 1024 * 1024 / 2),
            "5.5 GiB"
        );
    }

    #[test]
    fn columns_line_up_by_characters() {
        let table = text_table(
            &["id", "name"],
            &[["a".into(), "café".into()], ["long-id".into(), "x".into()]],
        );
        assert_eq!(
            table,
            "id      │ name\n────────┼─────\na       │ café\nlong-id │ x"
        );
    }
}

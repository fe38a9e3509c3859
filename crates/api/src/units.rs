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

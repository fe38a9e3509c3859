//! The samples of a Prometheus text exposition, read with `nom-openmetrics`.
//!
//! The text is read line by line, so a line the parser cannot read (a sample with a timestamp,
//! say) costs that line, not the whole page; blank lines and comments are skipped, since only
//! names, labels and values are used (the names tell what a metric is).

/// One sample: a metric name, its labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, e.g. `vllm:num_requests_running`.
    pub name: String,
    /// Its labels, in the order written.
    pub labels: Vec<(String, String)>,
    /// Its value.
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, when it has one.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// What a page held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    /// Every sample read.
    pub samples: Vec<Sample>,
    /// Lines that were neither blank, a comment nor a readable sample.
    pub unreadable_lines: usize,
    /// The first of them, for an error message.
    pub first_unreadable: Option<String>,
}

impl Exposition {
    /// Reads a page in the Prometheus text format.
    pub fn parse(text: &str) -> Self {
        let mut page = Self::default();
        let mut line_with_newline = String::new();
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            line_with_newline.clear();
            line_with_newline.push_str(line);
            line_with_newline.push('\n');
            let Ok((_, families)) = nom_openmetrics::parser::prometheus(&line_with_newline) else {
                page.unreadable_lines += 1;
                if page.first_unreadable.is_none() {
                    page.first_unreadable = Some(line.chars().take(120).collect());
                }
                continue;
            };
            for family in families {
                page.samples.extend(family.samples.iter().map(|sample| {
                    Sample {
                        name: sample.name().to_owned(),
                        labels: sample
                            .labels()
                            .iter()
                            .map(|label| (label.name.to_owned(), label.value.clone()))
                            .collect(),
                        value: sample.number(),
                    }
                }));
            }
        }
        page
    }

    /// Whether the page read as Prometheus text at all: some sample, or nothing unreadable.
    pub fn is_prometheus(&self) -> bool {
        !self.samples.is_empty() || self.unreadable_lines == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_colons_escaped_labels_and_special_values_are_read() {
        let page = Exposition::parse(
            "# HELP vllm:num_requests_running Requests running.\n\
             # TYPE vllm:num_requests_running gauge\n\
             vllm:num_requests_running{engine=\"0\",model_name=\"org/m, \\\"chat\\\"\"} 3.0\n\
             \n\
             # a plain comment\r\n\
             vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 1.2e+03\r\n\
             plain NaN\n",
        );
        assert_eq!(page.unreadable_lines, 0, "{:?}", page.first_unreadable);
        assert_eq!(page.samples.len(), 3);
        let running = &page.samples[0];
        assert_eq!(running.name, "vllm:num_requests_running");
        assert_eq!(running.label("model_name"), Some("org/m, \"chat\""));
        assert!((running.value - 3.0).abs() < f64::EPSILON);
        assert_eq!(page.samples[1].label("le"), Some("+Inf"));
        assert!((page.samples[1].value - 1200.0).abs() < f64::EPSILON);
        assert!(page.samples[2].value.is_nan());
    }

    #[test]
    fn an_unreadable_line_costs_only_itself() {
        let page = Exposition::parse("a 1\nthis is { not a sample\nb 2\n");
        assert_eq!(page.samples.len(), 2);
        assert_eq!(page.unreadable_lines, 1);
        assert_eq!(
            page.first_unreadable.as_deref(),
            Some("this is { not a sample")
        );
        assert!(page.is_prometheus());
        let html = Exposition::parse("<html><body>Not Found</body></html>\n");
        assert!(!html.is_prometheus());
        assert!(Exposition::parse("").is_prometheus());
    }
}

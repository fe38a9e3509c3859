//! The synthetic generator's models: what a `models` job lists and what each run generates with.

use runboard_api::ModelInfo;

/// One model: its id, name, weights in GiB, context length and typical tokens per second.
struct Entry {
    id: &'static str,
    name: &'static str,
    size_gib: f64,
    context_length: u64,
    tok_per_sec: f64,
    /// The alias requests use for it (what `model` says before resolution).
    alias: &'static str,
}

const ENTRIES: [Entry; 5] = [
    Entry {
        id: "synth-1b-instruct-q8",
        name: "Synth 1B Instruct (Q8)",
        size_gib: 1.3,
        context_length: 8_192,
        tok_per_sec: 95.0,
        alias: "synth-mini",
    },
    Entry {
        id: "synth-8b-instruct-q4",
        name: "Synth 8B Instruct (Q4_K_M)",
        size_gib: 4.9,
        context_length: 32_768,
        tok_per_sec: 55.0,
        alias: "synth-small",
    },
    Entry {
        id: "synth-14b-coder-q5",
        name: "Synth 14B Coder (Q5_K_M)",
        size_gib: 10.5,
        context_length: 65_536,
        tok_per_sec: 38.0,
        alias: "synth-coder",
    },
    Entry {
        id: "synth-32b-reasoner-q4",
        name: "Synth 32B Reasoner (Q4_K_M)",
        size_gib: 19.8,
        context_length: 131_072,
        tok_per_sec: 24.0,
        alias: "synth-large",
    },
    Entry {
        id: "synth-70b-instruct-fp8",
        name: "Synth 70B Instruct (FP8)",
        size_gib: 70.6,
        context_length: 131_072,
        tok_per_sec: 16.0,
        alias: "synth-xl",
    },
];

/// How many models the catalog has.
pub const MODEL_COUNT: usize = ENTRIES.len();

/// The catalog, as a models job reports it.
pub fn models() -> Vec<ModelInfo> {
    ENTRIES.iter().map(info).collect()
}

fn info(entry: &Entry) -> ModelInfo {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // Small positive sizes.
    let size_bytes = (entry.size_gib * 1024.0 * 1024.0 * 1024.0) as u64;
    ModelInfo {
        id: entry.id.to_owned(),
        name: entry.name.to_owned(),
        size_bytes: Some(size_bytes),
        context_length: Some(entry.context_length),
        tok_per_sec: Some(entry.tok_per_sec),
        upstream: None,
        owned_by: None,
    }
}

/// A model a run generates with: the alias it asks for and the model that serves it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pick {
    /// What the request names.
    pub alias: &'static str,
    /// The model that serves it.
    pub id: &'static str,
    /// Its typical tokens per second.
    pub tok_per_sec: f64,
}

/// The model at `index` (wrapping), or the one a run's `params.model` names by id or alias.
pub fn pick(index: usize, wanted: Option<&str>) -> Pick {
    let entry = wanted
        .and_then(|name| {
            ENTRIES
                .iter()
                .find(|entry| entry.id == name || entry.alias == name)
        })
        .unwrap_or(&ENTRIES[index % ENTRIES.len()]);
    Pick {
        alias: entry.alias,
        id: entry.id,
        tok_per_sec: entry.tok_per_sec,
    }
}

/// The catalog as a table for people: one line per model, columns aligned.
pub fn table(models: &[ModelInfo]) -> String {
    let rows: Vec<[String; 5]> = models
        .iter()
        .map(|model| {
            [
                model.id.clone(),
                model.name.clone(),
                model
                    .size_bytes
                    .map_or_else(|| "?".into(), runboard_api::units::bytes),
                model
                    .context_length
                    .map_or_else(|| "?".into(), |c| format!("{}k", c / 1024)),
                model
                    .tok_per_sec
                    .map_or_else(|| "?".into(), |r| format!("{r:.0}")),
            ]
        })
        .collect();
    runboard_api::units::text_table(&["id", "name", "size", "context", "tok/s"], &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_may_name_its_model_by_id_or_alias() {
        assert_eq!(pick(0, Some("synth-coder")).id, "synth-14b-coder-q5");
        assert_eq!(pick(0, Some("synth-70b-instruct-fp8")).alias, "synth-xl");
        assert_eq!(pick(7, Some("nope")).id, ENTRIES[7 % MODEL_COUNT].id);
    }

    #[test]
    fn the_table_has_a_header_a_rule_and_a_row_per_model() {
        let text = table(&models());
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2 + MODEL_COUNT);
        assert!(lines[0].starts_with("id"), "{text}");
        assert!(lines[2].contains("synth-1b-instruct-q8"));
        assert!(lines[2].contains("1.3 GiB"), "{text}");
    }
}

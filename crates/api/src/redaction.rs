//! Prompt-safe monitoring (`runboard serve --redact`): which fields of the wire carry what
//! people wrote or what a model answered, and how an event or a run reads with them left out.
//!
//! A server that redacts applies this before it stores anything, so the text is in no stored
//! byte, no stream, no listing and no recording made from them; the figures stay.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::data::DataAction;
use super::events::{DataEvent, Narration, RunEvent};
use super::types::{RunSummary, StoredEvent};

/// What a run's task reads as when its prompt was not kept. Clients may show something of
/// their own instead (the console shows the run's worker and figures).
pub const PROMPT_WITHHELD: &str = "(prompt withheld)";

/// Keys of a run's parameters that hold a prompt (a launch's chat `messages`, say); left out
/// of the record with the task.
pub const PROMPT_PARAMS: [&str; 4] = ["messages", "prompt", "system", "input"];

/// What a server leaves out of its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Redaction {
    /// No prompt is stored or sent: tasks read [`PROMPT_WITHHELD`], prompt parameters are
    /// left out. Answers are kept.
    Prompts,
    /// No prompt and no model output: besides the prompts, snippets, reasoning and tool-call
    /// arguments are left out. Runs keep their figures (tokens, tok/s, TTFT, status, model,
    /// worker).
    Text,
}

impl Redaction {
    /// Every mode, as `--redact` takes them.
    pub const ALL: [Self; 2] = [Self::Prompts, Self::Text];

    /// The name `--redact` takes and the wire carries.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Prompts => "prompts",
            Self::Text => "text",
        }
    }

    /// Whether model output is left out too.
    pub const fn withholds_answers(self) -> bool {
        matches!(self, Self::Text)
    }

    /// `summary` as this mode records it.
    pub fn summary(self, summary: &mut RunSummary) {
        if !summary.task.is_empty() {
            PROMPT_WITHHELD.clone_into(&mut summary.task);
        }
        if self.withholds_answers() {
            summary.snippet = None;
        }
    }

    /// A run's parameters as this mode records them: the prompt-holding keys left out.
    pub fn params(self, params: &mut Value) {
        if let Value::Object(map) = params {
            for key in PROMPT_PARAMS {
                map.remove(key);
            }
        }
    }

    /// `event` as this mode records it. `task` is the run's prompt, taken out of narrations
    /// that quote it; where it is not known (`""`), a `run_start` narration, which producers
    /// write as "how it starts: the task", loses what follows its first `": "`.
    #[must_use]
    pub fn event(self, event: RunEvent, task: &str) -> RunEvent {
        match event {
            RunEvent::RunCreated(mut summary) => {
                self.summary(&mut summary);
                RunEvent::RunCreated(summary)
            }
            RunEvent::NodeUpdate(mut update) if self.withholds_answers() => {
                update.snippet = None;
                update.reasoning = None;
                RunEvent::NodeUpdate(update)
            }
            RunEvent::Narration(narration) => RunEvent::Narration(withhold_task(narration, task)),
            RunEvent::Data(data) if self.withholds_answers() => RunEvent::Data(without_text(data)),
            other => other,
        }
    }

    /// A stored event as this mode sends it (a run's detail for a reader the server redacts
    /// for); an event that does not decode is left out of its data entirely.
    pub fn stored_event(self, event: &mut StoredEvent) {
        event.data = match RunEvent::decode_value(&event.event, event.data.take()) {
            Ok(decoded) => self.event(decoded, "").to_json(),
            Err(_) => Value::Null,
        };
    }

    /// An event's JSON data (as stored) as this mode sends it; `None` when it does not decode
    /// (then nothing of it should be sent).
    pub fn event_data(self, event: &str, data: &str) -> Option<String> {
        let decoded = RunEvent::decode(event, data).ok()?;
        Some(self.event(decoded, "").to_json_text())
    }
}

impl fmt::Display for Redaction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--redact` value that is not a mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown redaction {0:?}: expected text (no prompts and no answers) or prompts (no prompts)"
)]
pub struct UnknownRedaction(pub String);

impl FromStr for Redaction {
    type Err = UnknownRedaction;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|mode| mode.as_str() == text)
            .ok_or_else(|| UnknownRedaction(text.to_owned()))
    }
}

/// The action of the narration that starts a run, which ends with the run's task.
const RUN_START_ACTION: &str = "run_start";

fn withhold_task(mut narration: Narration, task: &str) -> Narration {
    if !task.is_empty() {
        if narration.formatted.contains(task) {
            narration.formatted = narration.formatted.replace(task, PROMPT_WITHHELD);
        }
    } else if narration.action.as_deref() == Some(RUN_START_ACTION)
        && let Some((how, _task)) = narration.formatted.split_once(": ")
    {
        narration.formatted = format!("{how}: {PROMPT_WITHHELD}");
    }
    narration
}

/// A `data` event without model output: a tool call keeps its name, not its arguments.
fn without_text(data: DataEvent) -> DataEvent {
    match data.decode() {
        Ok(DataAction::ToolCall(mut call)) => {
            call.arguments.clear();
            DataEvent {
                run_id: data.run_id,
                ..DataEvent::from(DataAction::ToolCall(call))
            }
        }
        _ => data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{NodeUpdate, RunStatus, ToolCall};
    use serde_json::json;

    const TASK: &str = "summarise the heron ledger";

    fn created() -> RunEvent {
        let mut summary = RunSummary::new("run-1", TASK, RunStatus::Queued);
        summary.snippet = Some("the heron answer".into());
        summary.worker = Some("w1".into());
        RunEvent::RunCreated(summary)
    }

    #[test]
    fn names_parse_and_print_both_ways() {
        for mode in Redaction::ALL {
            assert_eq!(mode.as_str().parse::<Redaction>(), Ok(mode));
            assert_eq!(serde_json::to_value(mode).unwrap(), json!(mode.as_str()));
        }
        let error = "answers".parse::<Redaction>().unwrap_err();
        assert!(error.to_string().contains("expected text"), "{error}");
    }

    #[test]
    fn prompts_mode_withholds_the_task_and_keeps_the_answer() {
        let RunEvent::RunCreated(summary) = Redaction::Prompts.event(created(), TASK) else {
            panic!("a run_created stays one");
        };
        assert_eq!(summary.task, PROMPT_WITHHELD);
        assert_eq!(summary.snippet.as_deref(), Some("the heron answer"));
        assert_eq!(summary.worker.as_deref(), Some("w1"));
        let update = RunEvent::NodeUpdate(NodeUpdate {
            snippet: Some("the heron answer".into()),
            tokens_out: Some(12),
            ..NodeUpdate::default()
        });
        assert_eq!(Redaction::Prompts.event(update.clone(), TASK), update);
    }

    #[test]
    fn text_mode_keeps_figures_and_names_but_no_text() {
        let RunEvent::RunCreated(summary) = Redaction::Text.event(created(), TASK) else {
            panic!("a run_created stays one");
        };
        assert_eq!(
            (summary.task.as_str(), summary.snippet),
            (PROMPT_WITHHELD, None)
        );
        let update = NodeUpdate {
            agent: Some("writer".into()),
            tokens_out: Some(12),
            snippet: Some("the heron answer".into()),
            reasoning: Some("thinking of herons".into()),
            ..NodeUpdate::default()
        };
        let RunEvent::NodeUpdate(kept) = Redaction::Text.event(RunEvent::NodeUpdate(update), TASK)
        else {
            panic!("a node_update stays one");
        };
        assert_eq!(
            (
                kept.agent.as_deref(),
                kept.tokens_out,
                kept.snippet,
                kept.reasoning
            ),
            (Some("writer"), Some(12), None, None)
        );
        let call = ToolCall {
            agent: "writer".into(),
            iteration: Some(1),
            index: 0,
            id: Some("call_1".into()),
            name: "lookup".into(),
            arguments: r#"{"bird": "heron"}"#.into(),
        };
        let RunEvent::Data(data) =
            Redaction::Text.event(RunEvent::data(DataAction::ToolCall(call)), TASK)
        else {
            panic!("a data event stays one");
        };
        let Ok(DataAction::ToolCall(call)) = data.decode() else {
            panic!("still a tool call: {data:?}");
        };
        assert_eq!(
            (call.name.as_str(), call.arguments.as_str()),
            ("lookup", "")
        );
    }

    #[test]
    fn narrations_quoting_the_task_quote_the_marker_instead() {
        let start = RunEvent::narration("info", "run_start", format!("Starting: {TASK}"));
        let RunEvent::Narration(narration) = Redaction::Prompts.event(start, TASK) else {
            panic!("a narration stays one");
        };
        assert_eq!(narration.formatted, format!("Starting: {PROMPT_WITHHELD}"));
        // Where the task is not known, a run's start keeps how it started and nothing after.
        let start = RunEvent::narration(
            "info",
            "run_start",
            format!("Starting on m at gpu (http://h:1/v1): {TASK}: part two"),
        );
        let RunEvent::Narration(narration) = Redaction::Text.event(start, "") else {
            panic!("a narration stays one");
        };
        assert_eq!(
            narration.formatted,
            format!("Starting on m at gpu (http://h:1/v1): {PROMPT_WITHHELD}")
        );
        let other = RunEvent::narration("info", "run_done", "Done: 40 tokens");
        assert_eq!(Redaction::Text.event(other.clone(), ""), other);
    }

    #[test]
    fn stored_events_and_raw_data_are_sent_redacted() {
        let mut stored = StoredEvent {
            seq: 1,
            event: "run_created".into(),
            data: created().to_json(),
            ts: None,
        };
        Redaction::Text.stored_event(&mut stored);
        assert_eq!(stored.data["task"], PROMPT_WITHHELD);
        assert!(
            stored.data.get("snippet").is_none_or(Value::is_null),
            "{stored:?}"
        );
        let data = created().to_json().to_string();
        let sent = Redaction::Prompts.event_data("run_created", &data).unwrap();
        assert!(
            !sent.contains(TASK) && sent.contains("the heron answer"),
            "{sent}"
        );
        assert_eq!(Redaction::Text.event_data("run_created", "not json"), None);
    }

    #[test]
    fn prompt_parameters_are_left_out_and_the_rest_kept() {
        let mut params = json!({"messages": [{"role": "user", "content": TASK}],
                                "system": "be brief", "model": "m", "worker": "w1"});
        Redaction::Prompts.params(&mut params);
        assert_eq!(params, json!({"model": "m", "worker": "w1"}));
    }
}

//! What one step's stream measures, the way benchmark tools measure a request: time to first
//! token, time to first answer token, inter-token latency, output tokens and decode rate.
//!
//! Times are instants on the server's own clock, taken as each chunk is read. A chunk carries
//! about one token on every engine runboard knows; without a usage figure the count is the
//! number of chunks with text, marked estimated until the server's figure replaces it.

use std::time::Duration;

use tokio::time::Instant;

use runboard_api::RunMetrics;
pub use runboard_api::StepFigures;

use super::chunk::{Chunk, Usage};

/// A step's measurements while its stream is read.
#[derive(Debug, Clone)]
pub struct StepMeter {
    sent_at: Instant,
    first_token: Option<Instant>,
    first_answer: Option<Instant>,
    last_token: Option<Instant>,
    saw_reasoning: bool,
    chunks_with_tokens: u64,
    usage: Option<Usage>,
    /// Gaps between chunks with tokens, for the latency quantiles.
    gaps: Vec<Duration>,
}

impl StepMeter {
    /// A meter for a request sent at `sent_at`.
    pub fn new(sent_at: Instant) -> Self {
        Self {
            sent_at,
            first_token: None,
            first_answer: None,
            last_token: None,
            saw_reasoning: false,
            chunks_with_tokens: 0,
            usage: None,
            gaps: Vec::new(),
        }
    }

    /// Takes in one chunk read at `at`; returns whether it carried tokens.
    pub fn chunk(&mut self, chunk: &Chunk, at: Instant) -> bool {
        if let Some(usage) = chunk.usage {
            self.usage = Some(usage);
        }
        let answer = !chunk.content.is_empty();
        let reasoning = !chunk.reasoning.is_empty();
        let tool = chunk
            .tool_calls
            .iter()
            .any(|call| !call.arguments.is_empty() || call.name.is_some());
        if !(answer || reasoning || tool) {
            return false;
        }
        self.saw_reasoning |= reasoning;
        self.first_token.get_or_insert(at);
        if answer || tool {
            self.first_answer.get_or_insert(at);
        }
        if let Some(last) = self.last_token {
            self.gaps.push(at.saturating_duration_since(last));
        }
        self.last_token = Some(at);
        self.chunks_with_tokens += 1;
        true
    }

    /// Output tokens so far, and whether the count is an estimate.
    pub fn output_tokens(&self) -> (u64, bool) {
        match self.usage {
            // A usage figure below what was counted is a server that reports only the answer
            // part; the count stays an estimate then.
            Some(usage) if usage.completion_tokens >= self.chunks_with_tokens => {
                (usage.completion_tokens, false)
            }
            _ => (self.chunks_with_tokens, true),
        }
    }

    /// Prompt tokens, once the server said.
    pub fn prompt_tokens(&self) -> Option<u64> {
        self.usage.and_then(|usage| usage.prompt_tokens)
    }

    /// Time to first token, once it came.
    pub fn ttft(&self) -> Option<Duration> {
        self.first_token
            .map(|at| at.saturating_duration_since(self.sent_at))
    }

    /// Whether a token has come.
    pub fn started(&self) -> bool {
        self.first_token.is_some()
    }

    /// The decode rate so far, once two tokens came.
    pub fn tok_per_sec(&self) -> Option<f64> {
        let (tokens, _) = self.output_tokens();
        let span = self
            .last_token?
            .saturating_duration_since(self.first_token?)
            .as_secs_f64();
        #[allow(clippy::cast_precision_loss)] // Token counts are far below 2^52.
        (tokens > 1 && span > 0.0).then(|| (tokens - 1) as f64 / span)
    }

    /// The figures of the step, its stream having ended at `end`.
    pub fn finish(&self, end: Instant) -> StepFigures {
        let millis = |d: Duration| d.as_secs_f64() * 1000.0;
        let (output_tokens, estimated) = self.output_tokens();
        let tpot_ms = match (self.first_token, self.last_token) {
            #[allow(clippy::cast_precision_loss)] // Token counts are far below 2^52.
            (Some(first), Some(last)) if output_tokens > 1 => {
                Some(millis(last.saturating_duration_since(first)) / (output_tokens - 1) as f64)
            }
            _ => None,
        };
        let mut gaps = self.gaps.clone();
        gaps.sort_unstable();
        let quantile = |q: f64| -> Option<f64> {
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )] // A rank within a short list.
            let rank = ((gaps.len() as f64 * q).ceil() as usize).clamp(1, gaps.len().max(1)) - 1;
            gaps.get(rank).map(|gap| millis(*gap))
        };
        StepFigures {
            output_tokens,
            estimated,
            prompt_tokens: self.prompt_tokens(),
            reasoning_tokens: self.usage.and_then(|usage| usage.reasoning_tokens),
            ttft_ms: self.ttft().map(millis),
            ttfat_ms: self
                .first_answer
                .filter(|_| self.saw_reasoning)
                .map(|at| millis(at.saturating_duration_since(self.sent_at))),
            tpot_ms,
            itl_p50_ms: quantile(0.5),
            itl_p99_ms: quantile(0.99),
            tok_per_sec: self.tok_per_sec(),
            duration_ms: millis(end.saturating_duration_since(self.sent_at)),
        }
    }
}

/// The run's sums over its steps.
#[derive(Debug, Default)]
pub struct RunTotals {
    /// Steps taken.
    pub steps: u64,
    /// Steps the model server ended without a finish reason.
    pub interrupted: u64,
    estimated: bool,
    prompt_tokens: u64,
    first_ttft_ms: Option<f64>,
    ttft_ms_sum: f64,
    with_ttft: u64,
    decode_ms: f64,
    decode_tokens: u64,
    duration_ms: f64,
}

impl RunTotals {
    /// Adds a step's figures; `interrupted` when the server ended it without a finish reason.
    pub fn add(&mut self, figures: &StepFigures, interrupted: bool) {
        self.steps += 1;
        self.interrupted += u64::from(interrupted);
        self.estimated |= figures.estimated;
        self.prompt_tokens += figures.prompt_tokens.unwrap_or(0);
        if let Some(ttft) = figures.ttft_ms {
            self.first_ttft_ms.get_or_insert(ttft);
            self.ttft_ms_sum += ttft;
            self.with_ttft += 1;
        }
        if let (Some(tpot), true) = (figures.tpot_ms, figures.output_tokens > 1) {
            #[allow(clippy::cast_precision_loss)] // Token counts are far below 2^52.
            let span = tpot * (figures.output_tokens - 1) as f64;
            self.decode_ms += span;
            self.decode_tokens += figures.output_tokens - 1;
        }
        self.duration_ms += figures.duration_ms;
    }

    /// Why a run of `tokens_out` tokens must not end as a success: its steps were
    /// interrupted and produced nothing. `None` when it may.
    pub fn empty_failure(&self, tokens_out: u64) -> Option<String> {
        (tokens_out == 0 && self.interrupted > 0).then(|| {
            format!(
                "the model server interrupted {} of {} step(s) (their answers ended with [DONE] \
                 but no finish reason) and they produced no tokens",
                self.interrupted, self.steps
            )
        })
    }

    /// How the run's end describes its interrupted steps: empty when there were none.
    pub fn interrupted_note(&self) -> String {
        if self.interrupted == 0 {
            String::new()
        } else {
            format!(", {} interrupted", self.interrupted)
        }
    }

    /// The sums as the `run_metrics` data event carries them, for a run of `tokens_out`.
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    pub fn figures(&self, tokens_out: u64) -> RunMetrics {
        RunMetrics {
            steps: self.steps,
            output_tokens: tokens_out,
            estimated: self.estimated,
            prompt_tokens: self.prompt_tokens,
            ttft_ms: self.first_ttft_ms,
            mean_ttft_ms: (self.with_ttft > 0).then(|| self.ttft_ms_sum / self.with_ttft as f64),
            tok_per_sec: (self.decode_ms > 0.0)
                .then(|| self.decode_tokens as f64 / (self.decode_ms / 1000.0)),
            duration_ms: self.duration_ms,
            interrupted_steps: self.interrupted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(content: &str, reasoning: &str) -> Chunk {
        Chunk {
            content: content.into(),
            reasoning: reasoning.into(),
            ..Chunk::default()
        }
    }

    #[test]
    fn reasoning_then_answer_gives_both_first_token_times_and_a_decode_rate() {
        let sent = Instant::now();
        let ms = |n: u64| sent + Duration::from_millis(n);
        let mut meter = StepMeter::new(sent);
        assert!(
            !meter.chunk(&text("", ""), ms(50)),
            "a role-only chunk has no token"
        );
        assert!(meter.chunk(&text("", "think"), ms(200)));
        assert!(meter.chunk(&text("", "more"), ms(210)));
        assert!(meter.chunk(&text("Hi", ""), ms(230)));
        assert!(meter.chunk(&text(" there", ""), ms(260)));
        assert_eq!(meter.output_tokens(), (4, true));
        let figures = meter.finish(ms(300));
        assert_eq!(figures.ttft_ms, Some(200.0));
        assert_eq!(figures.ttfat_ms, Some(230.0));
        assert_eq!(figures.tpot_ms, Some(20.0));
        assert_eq!(figures.itl_p50_ms, Some(20.0));
        assert_eq!(figures.itl_p99_ms, Some(30.0));
        assert!((figures.tok_per_sec.unwrap() - 50.0).abs() < 1e-9);
        assert!((figures.duration_ms - 300.0).abs() < 1e-9);
        assert!(figures.estimated);
    }

    #[test]
    fn a_usage_figure_replaces_the_count_and_no_reasoning_means_no_answer_time() {
        let sent = Instant::now();
        let mut meter = StepMeter::new(sent);
        meter.chunk(&text("a", ""), sent + Duration::from_millis(10));
        meter.chunk(&text("b", ""), sent + Duration::from_millis(20));
        let usage = Chunk {
            usage: Some(Usage {
                prompt_tokens: Some(7),
                completion_tokens: 3,
                reasoning_tokens: None,
            }),
            ..Chunk::default()
        };
        assert!(!meter.chunk(&usage, sent + Duration::from_millis(21)));
        assert_eq!(meter.output_tokens(), (3, false));
        let figures = meter.finish(sent + Duration::from_millis(22));
        assert_eq!(figures.prompt_tokens, Some(7));
        assert_eq!(figures.ttfat_ms, None);
        assert!(!figures.estimated);
    }

    #[test]
    fn usage_on_every_chunk_keeps_the_count_exact_throughout() {
        // vLLM's `continuous_usage_stats`: each chunk carries the running totals.
        let sent = Instant::now();
        let mut meter = StepMeter::new(sent);
        for n in 1..=4u64 {
            let chunk = Chunk {
                content: "ab".into(),
                usage: Some(Usage {
                    prompt_tokens: Some(5),
                    completion_tokens: 2 * n,
                    reasoning_tokens: None,
                }),
                ..Chunk::default()
            };
            meter.chunk(&chunk, sent + Duration::from_millis(10 * n));
            assert_eq!(meter.output_tokens(), (2 * n, false));
        }
        // A figure below the chunks counted is a server counting only part: still estimated.
        let low = Chunk {
            usage: Some(Usage {
                prompt_tokens: None,
                completion_tokens: 1,
                reasoning_tokens: None,
            }),
            ..Chunk::default()
        };
        meter.chunk(&low, sent + Duration::from_millis(60));
        assert_eq!(meter.output_tokens(), (4, true));
    }

    #[test]
    fn a_stream_without_tokens_has_no_times() {
        let sent = Instant::now();
        let figures = StepMeter::new(sent).finish(sent + Duration::from_millis(5));
        assert_eq!(figures.output_tokens, 0);
        assert_eq!(figures.ttft_ms, None);
        assert_eq!(figures.tok_per_sec, None);
        assert_eq!(figures.itl_p50_ms, None);
    }
}

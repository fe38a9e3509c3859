//! One read of a model server's metrics: the raw figures each engine exposes, found by their
//! documented names (newer names first, then the older ones they replaced), per model.

use std::collections::BTreeMap;

use runboard_api::Engine;

use super::exposition::{Exposition, Sample};

/// A figure's names across engines and versions, the preferred first.
struct Names(&'static [&'static str]);

const RUNNING: Names = Names(&[
    "vllm:num_requests_running",
    "sglang:num_running_reqs",
    "llamacpp:requests_processing",
]);
const WAITING: Names = Names(&[
    "vllm:num_requests_waiting",
    "sglang:num_queue_reqs",
    "llamacpp:requests_deferred",
]);
const KV_CACHE: Names = Names(&[
    "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc",
    "sglang:token_usage",
    "llamacpp:kv_cache_usage_ratio",
]);
const GENERATION_TOKENS: Names = Names(&[
    "vllm:generation_tokens_total",
    "sglang:generation_tokens_total",
    "llamacpp:tokens_predicted_total",
]);
const PROMPT_TOKENS: Names = Names(&[
    "vllm:prompt_tokens_total",
    "sglang:prompt_tokens_total",
    "llamacpp:prompt_tokens_total",
]);
const PREEMPTIONS: Names = Names(&["vllm:num_preemptions_total"]);
const TTFT: Names = Names(&[
    "vllm:time_to_first_token_seconds",
    "sglang:time_to_first_token_seconds",
]);
const INTER_TOKEN: Names = Names(&[
    "vllm:inter_token_latency_seconds",
    "vllm:time_per_output_token_seconds",
    "sglang:inter_token_latency_seconds",
    "sglang:time_per_output_token_seconds",
]);
/// llama.cpp's own average generation rate, used until two reads give a rate.
const SERVER_TOK_PER_SEC: Names = Names(&["llamacpp:predicted_tokens_seconds"]);

/// Cumulative histogram buckets: (upper bound, count), sorted by bound, `+Inf` last.
pub type Buckets = Vec<(f64, f64)>;

/// The raw figures of one model (or of the whole server) in one read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RawFigures {
    /// Requests running.
    pub running: Option<f64>,
    /// Requests waiting.
    pub waiting: Option<f64>,
    /// KV-cache use, 0 to 1.
    pub kv_cache: Option<f64>,
    /// Generated tokens (counter).
    pub generation_tokens: Option<f64>,
    /// Prompt tokens (counter).
    pub prompt_tokens: Option<f64>,
    /// Preemptions (counter).
    pub preemptions: Option<f64>,
    /// Time-to-first-token histogram.
    pub ttft: Option<Buckets>,
    /// Inter-token latency histogram.
    pub inter_token: Option<Buckets>,
    /// The server's own tok/s gauge (llama.cpp).
    pub server_tok_per_sec: Option<f64>,
}

/// One read: the engine, the whole server's figures and each model's.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// Which software, told by the metric names.
    pub engine: Engine,
    /// Every model summed.
    pub total: RawFigures,
    /// Per `model_name` label (empty when the server labels no model).
    pub models: BTreeMap<String, RawFigures>,
}

impl Reading {
    /// The figures of a page.
    pub fn from_exposition(page: &Exposition) -> Self {
        let engine = engine_of(&page.samples);
        let mut models: BTreeMap<String, Vec<&Sample>> = BTreeMap::new();
        for sample in &page.samples {
            if let Some(model) = sample.label("model_name") {
                models.entry(model.to_owned()).or_default().push(sample);
            }
        }
        let all: Vec<&Sample> = page.samples.iter().collect();
        Self {
            engine,
            total: RawFigures::from_samples(&all),
            models: models
                .into_iter()
                .map(|(model, samples)| (model, RawFigures::from_samples(&samples)))
                .collect(),
        }
    }
}

fn engine_of(samples: &[Sample]) -> Engine {
    let has = |prefix: &str| samples.iter().any(|s| s.name.starts_with(prefix));
    if has("vllm:") {
        Engine::Vllm
    } else if has("sglang:") {
        Engine::Sglang
    } else if has("llamacpp:") {
        Engine::Llamacpp
    } else {
        Engine::Other
    }
}

impl RawFigures {
    fn from_samples(samples: &[&Sample]) -> Self {
        Self {
            running: sum(samples, &RUNNING),
            waiting: sum(samples, &WAITING),
            // Several engines (data parallel) each have a cache; the fullest is what limits.
            kv_cache: max(samples, &KV_CACHE),
            generation_tokens: sum(samples, &GENERATION_TOKENS),
            prompt_tokens: sum(samples, &PROMPT_TOKENS),
            preemptions: sum(samples, &PREEMPTIONS),
            ttft: histogram(samples, &TTFT),
            inter_token: histogram(samples, &INTER_TOKEN),
            server_tok_per_sec: sum(samples, &SERVER_TOK_PER_SEC),
        }
    }
}

/// The samples of the first of `names` that has any.
fn first_present<'a>(samples: &[&'a Sample], names: &Names) -> Vec<&'a Sample> {
    names
        .0
        .iter()
        .map(|name| {
            samples
                .iter()
                .copied()
                .filter(|s| s.name == *name && s.value.is_finite())
                .collect::<Vec<_>>()
        })
        .find(|found| !found.is_empty())
        .unwrap_or_default()
}

fn sum(samples: &[&Sample], names: &Names) -> Option<f64> {
    let found = first_present(samples, names);
    (!found.is_empty()).then(|| found.iter().map(|s| s.value).sum())
}

fn max(samples: &[&Sample], names: &Names) -> Option<f64> {
    first_present(samples, names)
        .iter()
        .map(|s| s.value)
        .reduce(f64::max)
}

/// A histogram's buckets (`{name}_bucket` with `le`), summed over its other labels.
fn histogram(samples: &[&Sample], names: &Names) -> Option<Buckets> {
    names.0.iter().find_map(|name| {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = Vec::new();
        for sample in samples.iter().filter(|s| s.name == bucket_name) {
            let Some(bound) = sample.label("le").and_then(parse_bound) else {
                continue;
            };
            match buckets
                .iter_mut()
                .find(|(le, _)| le.total_cmp(&bound).is_eq())
            {
                Some((_, count)) => *count += sample.value,
                None => buckets.push((bound, sample.value)),
            }
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        (!buckets.is_empty()).then_some(buckets)
    })
}

fn parse_bound(text: &str) -> Option<f64> {
    match text.trim() {
        "+Inf" | "Inf" | "inf" => Some(f64::INFINITY),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(text: &str) -> Reading {
        Reading::from_exposition(&Exposition::parse(text))
    }

    #[test]
    fn vllm_figures_per_model_and_summed_over_engines() {
        let r = reading(
            "vllm:num_requests_running{engine=\"0\",model_name=\"a\"} 2\n\
             vllm:num_requests_running{engine=\"1\",model_name=\"a\"} 1\n\
             vllm:num_requests_running{engine=\"0\",model_name=\"b\"} 4\n\
             vllm:num_requests_waiting{engine=\"0\",model_name=\"a\"} 5\n\
             vllm:kv_cache_usage_perc{engine=\"0\",model_name=\"a\"} 0.25\n\
             vllm:kv_cache_usage_perc{engine=\"1\",model_name=\"a\"} 0.75\n\
             vllm:generation_tokens_total{engine=\"0\",model_name=\"a\"} 1000\n\
             vllm:time_to_first_token_seconds_bucket{le=\"0.1\",model_name=\"a\"} 3\n\
             vllm:time_to_first_token_seconds_bucket{le=\"+Inf\",model_name=\"a\"} 4\n\
             vllm:time_to_first_token_seconds_count{model_name=\"a\"} 4\n",
        );
        assert_eq!(r.engine, Engine::Vllm);
        assert_eq!(r.total.running, Some(7.0));
        let a = &r.models["a"];
        assert_eq!(
            (a.running, a.waiting, a.kv_cache),
            (Some(3.0), Some(5.0), Some(0.75))
        );
        assert_eq!(a.generation_tokens, Some(1000.0));
        assert_eq!(a.ttft, Some(vec![(0.1, 3.0), (f64::INFINITY, 4.0)]));
        assert_eq!(r.models["b"].waiting, None, "not exposed is not zero");
    }

    #[test]
    fn older_vllm_names_are_read_when_the_newer_are_absent() {
        let r = reading(
            "vllm:gpu_cache_usage_perc{model_name=\"m\"} 0.5\n\
             vllm:time_per_output_token_seconds_bucket{le=\"0.05\",model_name=\"m\"} 10\n\
             vllm:time_per_output_token_seconds_bucket{le=\"+Inf\",model_name=\"m\"} 10\n",
        );
        assert_eq!(r.total.kv_cache, Some(0.5));
        assert_eq!(
            r.total.inter_token,
            Some(vec![(0.05, 10.0), (f64::INFINITY, 10.0)])
        );
    }

    #[test]
    fn sglang_and_llama_cpp_names() {
        let s = reading(
            "sglang:num_running_reqs{model_name=\"q\"} 6\n\
             sglang:num_queue_reqs{model_name=\"q\"} 2\n\
             sglang:token_usage{model_name=\"q\"} 0.4\n\
             sglang:generation_tokens_total{model_name=\"q\"} 50\n",
        );
        assert_eq!(s.engine, Engine::Sglang);
        assert_eq!(
            (s.total.running, s.total.waiting, s.total.kv_cache),
            (Some(6.0), Some(2.0), Some(0.4))
        );
        let l = reading(
            "llamacpp:requests_processing 1\nllamacpp:requests_deferred 0\n\
             llamacpp:tokens_predicted_total 812\nllamacpp:prompt_tokens_total 64\n\
             llamacpp:predicted_tokens_seconds 41.5\n",
        );
        assert_eq!(l.engine, Engine::Llamacpp);
        assert!(l.models.is_empty());
        assert_eq!(l.total.generation_tokens, Some(812.0));
        assert_eq!(l.total.server_tok_per_sec, Some(41.5));
        assert_eq!(l.total.waiting, Some(0.0));
    }
}

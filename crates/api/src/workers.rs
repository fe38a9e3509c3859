//! `GET /api/workers`: the fleet as its workers (whoever makes a series of calls or runs), with
//! what each has done, and the fleet's figures over the last minute, goodput among them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// One worker and what it has done, as `GET /api/workers` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerFigures {
    /// Its name (see [`crate::RunSummary::worker`]).
    pub worker: String,
    /// Its calls or runs that completed.
    #[serde(default)]
    pub done: u64,
    /// Those that failed.
    #[serde(default)]
    pub failed: u64,
    /// Those that were cancelled (or whose client left).
    #[serde(default)]
    pub cancelled: u64,
    /// Those queued or running now.
    #[serde(default)]
    pub in_flight: u64,
    /// Tokens generated over all of them.
    #[serde(default)]
    pub tokens_out: u64,
    /// Tokens a second over the last few seconds (this server's calls).
    #[serde(default)]
    pub tok_per_sec: f64,
    /// Median time to first token of its calls in the last minute, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_p50_ms: Option<f64>,
    /// When it was last seen: the newest start or end of one of its runs (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
}

/// `GET /api/workers`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerList {
    /// Every worker with a run in the store, the most recently seen first.
    pub workers: Vec<WorkerFigures>,
    /// The fleet over the last minute.
    pub fleet: FleetFigures,
}

/// The fleet over the last minute: every call the server answered or failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetFigures {
    /// Calls answered a second (the last minute's mean).
    #[serde(default)]
    pub calls_per_sec: f64,
    /// Calls or runs that failed in the last minute.
    #[serde(default)]
    pub failures_per_min: f64,
    /// The share of the last minute's calls that met the objective, when one is set
    /// (`serve --slo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<Goodput>,
}

/// Goodput: how many of the last minute's calls met the service-level objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    /// The objective.
    pub slo: Slo,
    /// The fleet's calls (answered or failed) in the last minute.
    pub calls: u64,
    /// Those that met the objective.
    pub met: u64,
    /// Per model, by name.
    #[serde(default)]
    pub models: Vec<ModelGoodput>,
}

impl Goodput {
    /// The share that met it, 0 to 1; `None` without calls.
    pub fn share(&self) -> Option<f64> {
        share(self.met, self.calls)
    }
}

/// Goodput of one model's calls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelGoodput {
    /// The model the calls asked for.
    pub model: String,
    /// Its calls in the last minute.
    pub calls: u64,
    /// Those that met the objective.
    pub met: u64,
}

impl ModelGoodput {
    /// The share that met it, 0 to 1; `None` without calls.
    pub fn share(&self) -> Option<f64> {
        share(self.met, self.calls)
    }
}

#[allow(clippy::cast_precision_loss)] // Call counts far below 2^52.
fn share(met: u64, calls: u64) -> Option<f64> {
    (calls > 0).then(|| met as f64 / calls as f64)
}

/// A service-level objective for one call: its time to first token and its mean gap between
/// tokens (inter-token latency, the mean time per output token after the first), each
/// optional. A call meets it when every part set holds; a failed call never does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// The most time to first token, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    /// The most mean inter-token latency, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub itl_ms: Option<f64>,
}

impl Slo {
    /// Reads `ttft=500ms,itl=50ms` (either part optional; `ms` or `s`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut slo = Self {
            ttft_ms: None,
            itl_ms: None,
        };
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not NAME=TIME (ttft=500ms, itl=50ms)"))?;
            let ms = millis(value.trim())
                .ok_or_else(|| format!("{value:?} is not a time such as 500ms or 1.5s"))?;
            match name.trim().to_ascii_lowercase().as_str() {
                "ttft" => slo.ttft_ms = Some(ms),
                "itl" | "tpot" => slo.itl_ms = Some(ms),
                other => return Err(format!("unknown objective {other:?}: use ttft and itl")),
            }
        }
        if slo.ttft_ms.is_none() && slo.itl_ms.is_none() {
            return Err("no objective given: use ttft=500ms, itl=50ms or both".into());
        }
        Ok(slo)
    }

    /// Whether a call answered with these figures meets it. A part whose figure is unknown
    /// (no token came, or only one) is not met.
    pub fn met(&self, ttft_ms: Option<f64>, itl_ms: Option<f64>) -> bool {
        let within = |limit: Option<f64>, figure: Option<f64>| {
            limit.is_none_or(|limit| figure.is_some_and(|figure| figure <= limit))
        };
        within(self.ttft_ms, ttft_ms) && within(self.itl_ms, itl_ms)
    }
}

impl fmt::Display for Slo {
    /// As `--slo` takes it: `ttft=500ms,itl=50ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = [("ttft", self.ttft_ms), ("itl", self.itl_ms)]
            .into_iter()
            .filter_map(|(name, ms)| ms.map(|ms| format!("{name}={ms}ms")))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// `500ms`, `1.5s` or a bare number of milliseconds, as milliseconds.
fn millis(text: &str) -> Option<f64> {
    let (number, scale) = if let Some(ms) = text.strip_suffix("ms") {
        (ms, 1.0)
    } else if let Some(s) = text.strip_suffix('s') {
        (s, 1000.0)
    } else {
        (text, 1.0)
    };
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && value > 0.0).then_some(value * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_objective_is_read_from_its_flag_and_judges_calls() {
        let slo = Slo::parse("ttft=500ms, itl=0.05s").unwrap();
        assert_eq!(slo.ttft_ms, Some(500.0));
        assert_eq!(slo.itl_ms, Some(50.0));
        assert_eq!(slo.to_string(), "ttft=500ms,itl=50ms");
        assert!(slo.met(Some(499.0), Some(50.0)));
        assert!(!slo.met(Some(501.0), Some(10.0)));
        assert!(!slo.met(Some(100.0), None), "no gap measured: not met");
        let ttft_only = Slo::parse("ttft=2s").unwrap();
        assert!(ttft_only.met(Some(1999.0), None));
        assert!(!ttft_only.met(None, None));
        for bad in ["", "ttft", "ttft=fast", "e2e=5s", "ttft=-1ms", "itl=0"] {
            assert!(Slo::parse(bad).is_err(), "{bad:?} was taken");
        }
    }

    #[test]
    fn shares_need_calls() {
        let goodput = Goodput {
            slo: Slo::parse("ttft=1s").unwrap(),
            calls: 4,
            met: 3,
            models: vec![ModelGoodput {
                model: "m".into(),
                calls: 0,
                met: 0,
            }],
        };
        assert_eq!(goodput.share(), Some(0.75));
        assert_eq!(goodput.models[0].share(), None);
    }
}

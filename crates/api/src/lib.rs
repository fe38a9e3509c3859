//! The runs API: the wire contract (types and events) and a typed client. Shared by the server,
//! the console and the command line, so both ends of the wire use one definition.

mod access;
mod active_requests;
mod benchmark;
mod benchmark_tally;
mod client;
pub mod clock;
mod data;
mod error_code;
mod events;
mod models;
mod recording;
mod redaction;
mod replay_clock;
mod stream;
mod types;
pub mod units;
mod upstreams;
mod workers;

pub use access::{AccessInfo, Action, Role};
pub use active_requests::{ActiveRequest, ActiveRequests, RequestPhase};
pub use benchmark::{
    BENCHMARK_STATUS_TYPE, BenchmarkError, BenchmarkEvent, BenchmarkProgress, BenchmarkStarted,
    BenchmarkStatus, CreateBenchmark, LogFileState, TaskComplete, phase,
};
pub use benchmark_tally::{BenchmarkTally, RunningTotal};
pub use client::{ApiClient, ApiError, RunQuery};
pub use data::{AgentMetrics, DataAction, RunMetrics, Step, StepFigures, ToolCall};
pub use error_code::ErrorCode;
pub use events::{
    DataEvent, DecodeError, EventKind, Narration, NodeUpdate, Pruned, RunError, RunEvent,
    STEP_INTERRUPTED_ACTION, StatusChange, StreamEnd,
};
pub use models::{MODEL_LIST_ACTION, MODELS_JOB, ModelInfo, ModelList, UpstreamModels};
pub use recording::{
    RECORDING_FORMAT, RECORDING_VERSION, RecordedEvent, Recording, RecordingError, RecordingHeader,
};
pub use redaction::{PROMPT_PARAMS, PROMPT_WITHHELD, Redaction, UnknownRedaction};
pub use replay_clock::{ReplayClock, Served};
pub use stream::{
    EventStream, RequestsEvent, StreamEvent, StreamOptions, StreamUpdate, reconnect_policy,
};
pub use types::{
    CreateRun, ErrorBody, ErrorDetail, Feature, Health, InstanceStatus, RetentionStatus, RunDetail,
    RunList, RunMode, RunStatus, RunSummary, StoreStatus, StoredEvent,
};
pub use upstreams::{
    Engine, FigurePoint, Figures, ModelFigures, ScrapeState, Slot, Upstream, Upstreams,
};
pub use workers::{FleetFigures, Goodput, ModelGoodput, Slo, WorkerFigures, WorkerList};

//! The keys the board files things under: a server, a run on a server, and a card of the grid.

/// Which server a card, feed entry or log line came from (an index into the board's servers).
pub type ServerId = usize;

/// A run on a server: the key of cards, feed entries and details.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunKey {
    /// The server.
    pub server: ServerId,
    /// The run id on that server.
    pub run_id: String,
}

impl RunKey {
    /// A key for `run_id` on `server`.
    pub fn new(server: ServerId, run_id: impl Into<String>) -> Self {
        Self {
            server,
            run_id: run_id.into(),
        }
    }
}

/// What a card stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CardKey {
    /// A named worker on a server.
    Worker {
        /// The server.
        server: ServerId,
        /// The worker's name.
        name: String,
    },
    /// A run without a worker: its own card.
    Run(RunKey),
}

impl CardKey {
    /// The card of a run that belongs to `worker` (its own when `None`).
    pub fn of(run: &RunKey, worker: Option<&str>) -> Self {
        match worker {
            Some(name) => Self::Worker {
                server: run.server,
                name: name.to_owned(),
            },
            None => Self::Run(run.clone()),
        }
    }

    /// The server it is on.
    pub fn server(&self) -> ServerId {
        match self {
            Self::Worker { server, .. } => *server,
            Self::Run(run) => run.server,
        }
    }

    /// Its title: the worker's name or the run id.
    pub fn title(&self) -> &str {
        match self {
            Self::Worker { name, .. } => name,
            Self::Run(run) => &run.run_id,
        }
    }

    /// The worker's name, for a named worker.
    pub fn worker(&self) -> Option<&str> {
        match self {
            Self::Worker { name, .. } => Some(name),
            Self::Run(_) => None,
        }
    }
}

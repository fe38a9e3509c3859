//! Which streams the console keeps open, decided from the board alone: a pure policy that
//! returns commands, so it is tested without a network or a window.
//!
//! - Runs on a server without `/api/events` get their own stream, at most `max_run_streams` at
//!   once per server (a browser allows six connections per host); the others are marked as
//!   polled until a stream is free.
//! - The Benchmark and Requests views open their stream on each server that offers it while
//!   they show, and close it when they hide. A new view's streams wait until the old view's
//!   have closed, so a browser never holds both.
//! - The Models view asks each server for its models once.

use std::collections::{HashMap, HashSet};

use runboard_api::Feature;

use super::views::View;
use super::views::ViewNeeds;
use crate::board::{Board, RunKey, ServerId};

/// What the console's glue should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamCommand {
    /// Follow this run on its own stream.
    FollowRun(RunKey),
    /// Mark the card as polled (no stream free) or followed live; a board change.
    MarkPolled {
        /// The card.
        key: RunKey,
        /// Whether it is only polled.
        polled: bool,
    },
    /// Open the view's stream on this server (Benchmark or Requests).
    OpenView {
        /// The view whose stream it is.
        view: View,
        /// The server.
        server: ServerId,
    },
    /// Close the view's stream on this server.
    CloseView {
        /// The view whose stream it is.
        view: View,
        /// The server.
        server: ServerId,
    },
    /// Start a models job on this server; `follow_job` when it has no `/api/events`, so the
    /// job's own stream must be followed to see its result.
    ListModels {
        /// The server.
        server: ServerId,
        /// Whether to follow the job's stream.
        follow_job: bool,
    },
}

/// The policy's memory: what it has opened and asked for.
#[derive(Debug, Clone, Default)]
pub struct StreamPlan {
    /// The most run streams per server; `None` for no limit.
    max_run_streams: Option<usize>,
    /// Runs followed on their own stream.
    followed: HashSet<RunKey>,
    /// View streams open now.
    open_views: Vec<(View, ServerId)>,
    /// Servers asked for their models.
    models_asked: HashSet<ServerId>,
}

impl StreamPlan {
    /// A plan with at most `max_run_streams` run streams per server.
    pub fn new(max_run_streams: Option<usize>) -> Self {
        Self {
            max_run_streams,
            ..Self::default()
        }
    }

    /// View streams open now.
    pub fn open_views(&self) -> usize {
        self.open_views.len()
    }

    /// A view stream could not be opened (no client for the server); it is tried again on a
    /// later plan.
    pub fn view_not_opened(&mut self, view: View, server: ServerId) {
        self.open_views.retain(|open| *open != (view, server));
    }

    /// The models of a server were asked for by the user; the Models view will not ask again.
    pub fn models_asked(&mut self, server: ServerId) {
        self.models_asked.insert(server);
    }

    /// What to open and close now that the board is `board` and `view` shows. `closing` is
    /// true while view streams told to close have not ended yet: new ones wait for them.
    pub fn plan(&mut self, board: &Board, view: View, closing: bool) -> Vec<StreamCommand> {
        let mut commands = self.follow_runs(board);
        self.views(board, view, closing, &mut commands);
        commands
    }

    fn follow_runs(&mut self, board: &Board) -> Vec<StreamCommand> {
        let mut commands = Vec::new();
        let mut open: HashMap<ServerId, usize> = HashMap::new();
        for worker in board.workers() {
            if self.followed.contains(&worker.key) && !worker.status.is_finished() {
                *open.entry(worker.key.server).or_default() += 1;
            }
        }
        for worker in board.workers() {
            let per_run = board
                .servers
                .get(worker.key.server)
                .and_then(|server| server.health.as_ref())
                .is_some_and(|health| !health.has(Feature::Events));
            if !per_run || worker.status.is_finished() || self.followed.contains(&worker.key) {
                continue;
            }
            let streams = open.entry(worker.key.server).or_default();
            if self.max_run_streams.is_some_and(|max| *streams >= max) {
                if !worker.polled {
                    commands.push(StreamCommand::MarkPolled {
                        key: worker.key.clone(),
                        polled: true,
                    });
                }
                continue;
            }
            *streams += 1;
            self.followed.insert(worker.key.clone());
            commands.push(StreamCommand::FollowRun(worker.key.clone()));
            if worker.polled {
                commands.push(StreamCommand::MarkPolled {
                    key: worker.key.clone(),
                    polled: false,
                });
            }
        }
        commands
    }

    fn views(
        &mut self,
        board: &Board,
        view: View,
        closing: bool,
        commands: &mut Vec<StreamCommand>,
    ) {
        let (keep, stop): (Vec<_>, Vec<_>) = std::mem::take(&mut self.open_views)
            .into_iter()
            .partition(|(open, _)| *open == view);
        self.open_views = keep;
        let stopping = !stop.is_empty();
        commands.extend(
            stop.into_iter()
                .map(|(view, server)| StreamCommand::CloseView { view, server }),
        );
        if stopping || closing {
            return;
        }
        let offers = |server: ServerId, feature: Feature| {
            board.servers[server]
                .health
                .as_ref()
                .is_some_and(|health| health.has(feature))
        };
        let feature = match view.spec().needs {
            ViewNeeds::BenchmarkStream => Feature::Benchmarks,
            ViewNeeds::RequestsStream => Feature::ActiveRequests,
            ViewNeeds::ModelLists => {
                for server in 0..board.servers.len() {
                    let unknown = board.servers[server].models.is_none();
                    if unknown
                        && offers(server, Feature::Models)
                        && self.models_asked.insert(server)
                    {
                        commands.push(StreamCommand::ListModels {
                            server,
                            follow_job: !offers(server, Feature::Events),
                        });
                    }
                }
                return;
            }
            // The upstreams stream is always open: the summary bar shows it in every view.
            ViewNeeds::Nothing => return,
        };
        for server in 0..board.servers.len() {
            let open = self.open_views.iter().any(|(_, s)| *s == server);
            if offers(server, feature) && !open {
                self.open_views.push((view, server));
                commands.push(StreamCommand::OpenView { view, server });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use runboard_api::{Health, RunEvent, RunStatus, RunSummary};

    use super::*;
    use crate::board::Inbound;

    fn board(features: &[Feature]) -> Board {
        let mut board = Board::new(&["http://a".into()], crate::board::Settings::default());
        let health = Health {
            status: "ok".into(),
            version: None,
            features: features.to_vec(),
            ..Health::without_features()
        };
        board.apply(Inbound::Health { server: 0, health }, 0.0);
        board
    }

    fn appear(board: &mut Board, id: &str) {
        let summary = RunSummary::new(id, "t", RunStatus::Running);
        board.apply(Inbound::Appeared { server: 0, summary }, 0.0);
    }

    /// Applies what the glue would apply to the board.
    fn carry_out(board: &mut Board, commands: &[StreamCommand]) {
        for command in commands {
            if let StreamCommand::MarkPolled { key, polled } = command {
                let (key, polled) = (key.clone(), *polled);
                board.apply(Inbound::Polled { key, polled }, 0.0);
            }
        }
    }

    #[test]
    fn runs_get_their_own_stream_up_to_the_budget_and_the_rest_are_polled() {
        let mut board = board(&[Feature::Cancel]);
        for id in ["r1", "r2", "r3"] {
            appear(&mut board, id);
        }
        let mut plan = StreamPlan::new(Some(2));
        let commands = plan.plan(&board, View::Workers, false);
        let key = |id: &str| RunKey::new(0, id);
        assert_eq!(
            commands,
            [
                StreamCommand::FollowRun(key("r1")),
                StreamCommand::FollowRun(key("r2")),
                StreamCommand::MarkPolled {
                    key: key("r3"),
                    polled: true
                },
            ]
        );
        carry_out(&mut board, &commands);
        assert!(plan.plan(&board, View::Workers, false).is_empty());
        // r1 ends: its stream is free, and r3 takes it.
        let end = RunEvent::stream_end(RunStatus::Completed).with_run_id("r1");
        board.apply(
            Inbound::Event {
                server: 0,
                event: end,
            },
            1.0,
        );
        let commands = plan.plan(&board, View::Workers, false);
        assert_eq!(
            commands,
            [
                StreamCommand::FollowRun(key("r3")),
                StreamCommand::MarkPolled {
                    key: key("r3"),
                    polled: false
                },
            ]
        );
    }

    #[test]
    fn a_server_with_the_events_stream_needs_no_run_streams() {
        let mut board = board(&[Feature::Events]);
        appear(&mut board, "r1");
        assert!(
            StreamPlan::new(Some(1))
                .plan(&board, View::Workers, false)
                .is_empty()
        );
    }

    #[test]
    fn view_streams_open_with_their_view_and_the_next_waits_for_the_old_to_close() {
        let board = board(&[
            Feature::Events,
            Feature::Benchmarks,
            Feature::ActiveRequests,
        ]);
        let mut plan = StreamPlan::new(None);
        let open = |view| StreamCommand::OpenView { view, server: 0 };
        assert_eq!(
            plan.plan(&board, View::Benchmark, false),
            [open(View::Benchmark)]
        );
        assert!(plan.plan(&board, View::Benchmark, false).is_empty());
        assert_eq!(plan.open_views(), 1);
        // Switching: close first, and open nothing while the old stream is still closing.
        assert_eq!(
            plan.plan(&board, View::Requests, false),
            [StreamCommand::CloseView {
                view: View::Benchmark,
                server: 0
            }]
        );
        assert!(plan.plan(&board, View::Requests, true).is_empty());
        assert_eq!(
            plan.plan(&board, View::Requests, false),
            [open(View::Requests)]
        );
        // A stream that could not be opened is tried again.
        plan.view_not_opened(View::Requests, 0);
        assert_eq!(
            plan.plan(&board, View::Requests, false),
            [open(View::Requests)]
        );
    }

    #[test]
    fn a_view_the_server_does_not_offer_opens_nothing_and_models_are_asked_once() {
        let board = board(&[Feature::Models]);
        let mut plan = StreamPlan::new(None);
        assert!(plan.plan(&board, View::Benchmark, false).is_empty());
        assert_eq!(
            plan.plan(&board, View::Models, false),
            [StreamCommand::ListModels {
                server: 0,
                follow_job: true
            }]
        );
        assert!(plan.plan(&board, View::Models, false).is_empty());
    }
}

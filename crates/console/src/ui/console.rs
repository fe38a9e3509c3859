//! The console: an `eframe::App` that drains the inbox into the board in `logic` and draws the
//! board in `ui`.

use std::time::Duration;

use web_time::Instant;

use super::Action;
use super::replay_pace::{Progress, ReplayPace, ReplayView};
use super::state::{FocusTarget, UiState};
use super::stream_plan::{StreamCommand, StreamPlan};
use super::views::View;
use super::views::ViewNeeds;
use super::views::feed_view::{chain_windows_ui, feed_ui};
use super::views::log_view::log_ui;
use super::views::settings_view::settings_window_ui;
use super::views::summary::summary_ui;
use super::views::token_view::token_window_ui;
use crate::board::{Board, Inbound, ServerId, Settings};
use crate::network::Inbox;
use crate::network::Spawner;
use crate::network::{Connector, LaunchRequest};
use crate::network::{Stopping, TaskGuard};
use runboard_api::{ApiClient, CreateBenchmark, Feature};

/// How long `logic` may spend applying messages before it yields a frame.
const DRAIN_BUDGET: Duration = Duration::from_millis(10);

/// How long a stepped replay may step before it draws a frame.
const STEPPING_BUDGET: Duration = Duration::from_millis(100);

/// While something shows a ticking time (elapsed, stall age, reconnect countdown), repaint this
/// often; otherwise only when data arrives.
const TICK: Duration = Duration::from_secs(1);

/// Tasks in the benchmark `--demo` starts.
const DEMO_BENCHMARK_TASKS: u64 = 8;

/// The key the UI state is saved under.
const STORAGE_KEY: &str = "runboard-ui";

/// The key the board's settings are saved under.
const SETTINGS_KEY: &str = "runboard-settings";

/// What the console is started with.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// The servers to watch, by base URL.
    pub servers: Vec<String>,
    /// Bearer token for the servers.
    pub token: Option<String>,
    /// Launch a demo batch on the first server at once.
    pub demo: bool,
    /// How often the feed polls.
    pub feed_poll: Duration,
    /// Board settings.
    pub settings: Settings,
    /// Start with this launch form instead of the remembered one.
    pub launch: Option<crate::ui::LaunchForm>,
    /// Open on this view instead of the remembered one.
    pub view: Option<View>,
    /// The most per-run streams followed at once per server (for servers without
    /// `/api/events`); the rest are polled. A browser allows six connections per host.
    pub max_run_streams: Option<usize>,
    /// Watch a replay on its clock (the embedded server replays a recording).
    pub replay: Option<ReplayView>,
}

impl ConsoleConfig {
    /// Defaults for these servers.
    pub fn new(servers: Vec<String>) -> Self {
        Self {
            servers,
            token: None,
            demo: false,
            feed_poll: Duration::from_secs(8),
            settings: Settings::default(),
            launch: None,
            view: None,
            max_run_streams: None,
            replay: None,
        }
    }
}

/// The console app.
pub struct Console {
    board: Board,
    inbox: Inbox,
    connector: Connector,
    state: UiState,
    started: Instant,
    /// Which streams to open and close: the pure policy.
    plan: StreamPlan,
    /// Why the console cannot work at all (a bad server URL), shown instead of the UI.
    fatal: Option<String>,
    /// The bearer token for every server.
    token: Option<String>,
    /// View streams open now (benchmark or requests, per server): dropped, they close.
    view_streams: Vec<(View, ServerId, TaskGuard)>,
    /// View streams told to close that have not yet: new ones wait for them, so a browser never
    /// holds the old view's stream and the new one's at once.
    closing: Vec<Stopping>,
    /// The demo also starts a benchmark, once the first server says it can run one.
    demo_benchmark_pending: bool,
    /// The title last set.
    title: String,
    /// On a replay: the recording's clock, and the stepping of a stepped one.
    replay: Option<ReplayPace>,
}

impl Console {
    /// Builds the console and starts its network tasks.
    pub fn new(
        ctx: &egui::Context,
        storage: Option<&dyn eframe::Storage>,
        config: ConsoleConfig,
        spawner: Spawner,
    ) -> Self {
        super::install_fonts(ctx);
        let mut state: UiState = storage
            .and_then(|storage| eframe::get_value(storage, STORAGE_KEY))
            .unwrap_or_default();
        if let Some(form) = config.launch.clone() {
            state.launch = form;
        }
        if let Some(view) = config.view {
            state.view = view;
        }
        if state.bench_tasks == 0 {
            state.bench_tasks = 10;
        }
        let token = config
            .token
            .clone()
            .or_else(crate::network::token_store::load);
        let (inbox, outbox) = Inbox::new(ctx);
        let clients: Result<Vec<ApiClient>, String> = config
            .servers
            .iter()
            .map(|url| ApiClient::new(url, token.as_deref()).map_err(|e| e.to_string()))
            .collect();
        let (clients, fatal) = match clients {
            Ok(clients) => (clients, None),
            Err(error) => (Vec::new(), Some(error)),
        };
        let replay = config
            .replay
            .clone()
            .map(|view| ReplayPace::new(view, config.feed_poll.as_secs_f64()));
        let mut connector = Connector::new(spawner, outbox, clients, config.feed_poll);
        if replay.as_ref().is_some_and(ReplayPace::is_stepped) {
            connector.poll_on_demand();
        }
        connector.watch_all();
        let settings = storage
            .and_then(|storage| eframe::get_value(storage, SETTINGS_KEY))
            .unwrap_or(config.settings);
        let mut console = Self {
            board: Board::new(&config.servers, settings),
            inbox,
            connector,
            state,
            started: Instant::now(),
            plan: StreamPlan::new(config.max_run_streams),
            fatal,
            token,
            view_streams: Vec::new(),
            closing: Vec::new(),
            demo_benchmark_pending: false,
            title: String::new(),
            replay,
        };
        if let Some(view) = &config.replay {
            let label = view.label.clone();
            let now = console.now();
            console
                .board
                .apply(Inbound::ServerNamed { server: 0, label }, now);
        }
        // Servers added in an earlier session are watched again.
        for url in console.state.added_servers.clone() {
            if !console.board.servers.iter().any(|s| s.url == url) {
                console.watch(&url);
            }
        }
        if config.demo {
            console.launch_demo();
        }
        console
    }

    /// The board, for tests and screenshots.
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// The UI state (what is saved between starts), for tests.
    pub fn ui_state(&self) -> &UiState {
        &self.state
    }

    /// The UI state, to set up a test.
    pub fn ui_state_mut(&mut self) -> &mut UiState {
        &mut self.state
    }

    /// The view streams open now (benchmark and requests streams of the shown view).
    pub fn view_streams_open(&self) -> usize {
        self.view_streams.len()
    }

    fn now(&self) -> f64 {
        match &self.replay {
            Some(replay) => replay.now(),
            None => self.started.elapsed().as_secs_f64(),
        }
    }

    /// On a stepped replay: whether it has reached its stop with everything in (the moment
    /// for a screenshot); `None` otherwise.
    pub fn replay_is_still(&self) -> Option<bool> {
        self.replay
            .as_ref()
            .filter(|replay| replay.is_stepped())
            .map(ReplayPace::is_still)
    }

    /// Starts the demo benchmark once the first server has said it runs benchmarks.
    fn start_demo_benchmark(&mut self) {
        if !self.demo_benchmark_pending {
            return;
        }
        let Some(health) = self.board.servers.first().and_then(|s| s.health.as_ref()) else {
            return;
        };
        self.demo_benchmark_pending = false;
        let idle = !self.board.servers[0].benchmark.running();
        if health.has(Feature::Benchmarks) && idle {
            let request = CreateBenchmark {
                tasks: DEMO_BENCHMARK_TASKS,
                name: Some("demo".into()),
                params: serde_json::json!({ "iterations": 1 }),
            };
            self.connector.start_benchmark(0, request);
        }
    }

    fn launch_demo(&mut self) {
        self.demo_benchmark_pending = true;
        let form = crate::ui::state::LaunchForm::default();
        let mode = form.mode();
        let params = form.params();
        self.connector.launch(
            0,
            LaunchRequest {
                task: form.task,
                count: form.count,
                stagger_ms: form.stagger_ms,
                mode,
                params,
            },
        );
    }

    fn act(&mut self, action: Action) {
        match action {
            Action::Launch => {
                let form = &self.state.launch;
                let server = form.server.min(self.board.servers.len().saturating_sub(1));
                self.connector.launch(
                    server,
                    LaunchRequest {
                        task: form.task.trim().to_owned(),
                        count: form.count.clamp(1, 256),
                        stagger_ms: form.stagger_ms,
                        mode: form.mode(),
                        params: form.params(),
                    },
                );
                self.state.launch_open = false;
            }
            Action::LaunchDemo => self.launch_demo(),
            Action::Cancel(key) => self.connector.cancel(&key),
            Action::CancelAll => {
                for worker in self.board.workers() {
                    if !worker.status.is_finished() {
                        self.connector.cancel(&worker.key);
                    }
                }
            }
            Action::ClearFinished => self.board.apply(Inbound::ClearFinished, self.now()),
            Action::ChangeSettings(settings) => {
                self.board.apply(Inbound::Settings(settings), self.now());
            }
            Action::AddServer(url) => {
                if self.watch(&url) && !self.state.added_servers.contains(&url) {
                    self.state.added_servers.push(url);
                }
            }
            Action::ListModels(server) => self.list_models(server),
            Action::SetToken(token) => {
                crate::network::token_store::remember(&token);
                let refused: Vec<usize> = (0..self.board.servers.len())
                    .filter(|&i| self.board.servers[i].needs_token.is_some())
                    .collect();
                self.board.apply(Inbound::TokenGiven, self.now());
                self.connector.set_token(&token, &refused);
                self.token = Some(token);
            }
            Action::StartBenchmark { server, tasks } => {
                let request = CreateBenchmark {
                    tasks,
                    name: None,
                    params: serde_json::Value::Null,
                };
                self.connector.start_benchmark(server, request);
            }
        }
    }

    fn list_models(&mut self, server: usize) {
        let follow_job = self
            .board
            .servers
            .get(server)
            .and_then(|s| s.health.as_ref())
            .is_some_and(|h| !h.has(Feature::Events));
        self.plan.models_asked(server);
        self.connector.list_models(server, follow_job);
    }

    /// Asks the stream plan what to open and close, and does it.
    fn carry_out_plan(&mut self, ctx: &egui::Context) {
        self.closing.retain(|stopping| !stopping.ended());
        let closing = !self.closing.is_empty();
        let commands = self.plan.plan(&self.board, self.state.view, closing);
        for command in commands {
            match command {
                StreamCommand::FollowRun(key) => self.connector.follow_run(&key),
                StreamCommand::MarkPolled { key, polled } => {
                    self.board
                        .apply(Inbound::Polled { key, polled }, self.now());
                }
                StreamCommand::OpenView { view, server } => {
                    let guard = match view.spec().needs {
                        ViewNeeds::BenchmarkStream => self.connector.watch_benchmark(server),
                        ViewNeeds::RequestsStream => self.connector.watch_requests(server),
                        // The plan opens streams only for views that need one.
                        ViewNeeds::Nothing | ViewNeeds::ModelLists => None,
                    };
                    match guard {
                        Some(guard) => self.view_streams.push((view, server, guard)),
                        None => self.plan.view_not_opened(view, server),
                    }
                }
                StreamCommand::CloseView { view, server } => {
                    let (stop, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.view_streams)
                        .into_iter()
                        .partition(|(v, s, _)| (*v, *s) == (view, server));
                    self.view_streams = keep;
                    self.closing
                        .extend(stop.into_iter().map(|(_, _, guard)| guard.stop()));
                }
                StreamCommand::ListModels { server, follow_job } => {
                    self.connector.list_models(server, follow_job);
                }
            }
        }
        if !self.closing.is_empty() {
            // They end on their next poll; look again in a moment.
            ctx.request_repaint_after(Duration::from_millis(10));
        }
    }

    /// Starts watching a server; false when the URL is not usable.
    fn watch(&mut self, url: &str) -> bool {
        match ApiClient::new(url, self.token.as_deref()) {
            Ok(client) => {
                let url = url.to_owned();
                self.board.apply(Inbound::ServerAdded { url }, self.now());
                self.connector.add_server(client);
                true
            }
            Err(_) => false,
        }
    }

    /// Whether a time shown on screen changes by itself.
    fn something_ticks(&self) -> bool {
        let view_ticks = (self.state.view.spec().ticks)(&self.board);
        view_ticks
            || self.board.live_workers() > 0
            || self
                .board
                .servers
                .iter()
                .any(|s| matches!(s.link, Some(crate::board::Link::Reconnecting { .. })))
    }

    fn keyboard(&mut self, ctx: &egui::Context) {
        let typing = ctx.egui_wants_keyboard_input();
        ctx.input(|input| {
            if input.key_pressed(egui::Key::Escape) {
                self.state.launch_open = false;
                self.state.settings_open = false;
                self.state.expanded.clear();
            }
            if typing {
                return;
            }
            if input.key_pressed(egui::Key::L)
                && self.board.may_anywhere(runboard_api::Action::Launch)
            {
                self.state.launch_open = true;
                self.state.focus = Some(FocusTarget::Task);
            }
            if input.key_pressed(egui::Key::Slash) {
                self.state.focus = Some(FocusTarget::Filter);
            }
            let digits = [
                egui::Key::Num1,
                egui::Key::Num2,
                egui::Key::Num3,
                egui::Key::Num4,
                egui::Key::Num5,
            ];
            for (key, view) in digits.into_iter().zip(View::ALL) {
                if input.key_pressed(key) {
                    self.state.view = view;
                }
            }
        });
    }
}

impl Console {
    /// Applies what came in (within a time budget) and asks for what the board now wants:
    /// streams, details, the demo's benchmark. True when the inbox was emptied.
    fn take_in(&mut self, ctx: &egui::Context, now: f64) -> bool {
        let mut drained = true;
        let deadline = Instant::now() + DRAIN_BUDGET;
        while let Some(message) = self.inbox.try_next() {
            let appeared = matches!(message, Inbound::Appeared { .. } | Inbound::Runs { .. });
            self.board.apply(message, now);
            if appeared {
                self.carry_out_plan(ctx);
            }
            if Instant::now() >= deadline {
                // More is waiting: draw what we have and come straight back.
                ctx.request_repaint();
                drained = false;
                break;
            }
        }
        self.carry_out_plan(ctx);
        self.start_demo_benchmark();
        if !self.board.feed.wanted().is_empty() {
            for key in self.board.feed.wanted() {
                self.connector.fetch_detail(key);
            }
            self.board.apply(Inbound::DetailsAsked, now);
        }
        drained
    }

    /// A stepped replay: takes in what came and moves the clock a step whenever everything
    /// served up to now is in, as many steps as fit in a frame's budget. It waits for the
    /// server here, not across frames, so a step costs the server's latency, not a frame.
    fn step_replay(&mut self, ctx: &egui::Context) {
        let deadline = Instant::now() + STEPPING_BUDGET;
        loop {
            // Read before taking in: every event up to it is then in the inbox, and applied.
            let seen_id = self.connector.last_event_id();
            let now = self.now();
            let drained = self.take_in(ctx, now);
            let Some(replay) = self.replay.as_mut() else {
                return;
            };
            ctx.request_repaint();
            match replay.frame(&self.board, &self.connector, seen_id, drained) {
                Progress::AtStop => return,
                Progress::Stepped => {}
                Progress::Waiting => std::thread::sleep(Duration::from_millis(1)),
            }
            if Instant::now() >= deadline {
                return;
            }
        }
    }
}

impl eframe::App for Console {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        if self.replay.as_ref().is_some_and(ReplayPace::is_stepped) {
            self.step_replay(ctx);
        } else {
            let now = self.now();
            self.take_in(ctx, now);
        }
        let now = self.now();
        self.board.apply(Inbound::Tick, now);
        if self.something_ticks() {
            ctx.request_repaint_after(TICK);
        }
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        let ctx = ui.ctx().clone();
        if let Some(error) = &self.fatal {
            egui::CentralPanel::default().show(ui, |ui| {
                ui.heading("runboard cannot start");
                ui.label(error);
            });
            return;
        }
        self.keyboard(&ctx);
        let now = self.now();
        super::title::show(
            &ctx,
            &super::title::title(&self.board, now),
            &mut self.title,
        );
        let actions = console_ui(ui, &self.board, &mut self.state, now);
        for action in actions {
            self.act(action);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, STORAGE_KEY, &self.state);
        eframe::set_value(storage, SETTINGS_KEY, &self.board.settings);
    }
}

/// Draws the whole console for a board: summary bar, log, feed, cards, and the chain and
/// settings windows. Pure drawing: what the user asks for comes back as actions.
pub fn console_ui(ui: &mut egui::Ui, board: &Board, state: &mut UiState, now: f64) -> Vec<Action> {
    let ctx = ui.ctx().clone();
    let mut actions = Vec::new();
    egui::Panel::top("summary").show(ui, |ui| {
        summary_ui(ui, board, state, now, &mut actions);
    });
    egui::Panel::top("views").show(ui, |ui| {
        ui.horizontal(|ui| {
            for (number, view) in View::ALL.into_iter().enumerate() {
                ui.selectable_value(&mut state.view, view, view.label())
                    .on_hover_text(format!("Key {}", number + 1));
            }
        });
    });
    let log_title = format!("Log ({} lines)", board.log.lines().len());
    egui::Panel::bottom("log")
        .resizable(true)
        .default_size(160.0)
        .show(ui, |ui| {
            let header = egui::CollapsingHeader::new(log_title)
                .id_salt("log-open")
                .open(Some(state.log_open))
                .show(ui, |ui| log_ui(ui, board, state, now));
            if header.header_response.clicked() {
                state.log_open = !state.log_open;
            }
        });
    if state.view.spec().with_feed {
        egui::Panel::right("feed")
            .resizable(true)
            .default_size(430.0)
            .min_size(300.0)
            .show(ui, |ui| feed_ui(ui, board, state));
    }
    let draw = state.view.spec().draw;
    egui::CentralPanel::default().show(ui, |ui| draw(ui, board, state, now, &mut actions));
    chain_windows_ui(&ctx, board, state);
    if state.settings_open {
        settings_window_ui(&ctx, state, board, &mut actions);
    }
    token_window_ui(&ctx, board, state, &mut actions);
    actions
}

//! The console driven through AccessKit with `egui_kittest` (headless, no GPU), against a real
//! reference server on loopback: launch, cards, cancel, feed with EXPAND, the filter, and both
//! stream paths (`/api/events`, and per-run streams for a server without it).

use std::time::{Duration, Instant};

use egui_kittest::Harness;
use egui_kittest::kittest::Queryable as _;
use runboard_api::RunStatus;
use runboard_console::board::{RequestsFeed, RunKey};
use runboard_console::network::Spawner;
use runboard_console::ui::{Console, ConsoleConfig, LaunchForm, LogLevel, RequestColumn};
use runboard_server::{
    self as server, DbLocation, GeneratorConfig, RunningServer, ServerConfig, StoreSettings,
};

pub(crate) struct Setup {
    runtime: tokio::runtime::Runtime,
    server: Option<RunningServer>,
    _dir: tempfile::TempDir,
}

impl Setup {
    /// The server's base URL.
    pub(crate) fn url(&self) -> String {
        self.server.as_ref().unwrap().url()
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            self.runtime.block_on(server.stop());
        }
    }
}

fn setup(speed: f64, events_endpoint: bool) -> Setup {
    setup_with(speed, |config| config.events.endpoint = events_endpoint)
}

pub(crate) fn setup_with(speed: f64, adjust: impl FnOnce(&mut ServerConfig)) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig {
        addr: "127.0.0.1:0".parse().unwrap(),
        generator: GeneratorConfig {
            seed: Some(5),
            speed,
            failure_rate: 0.0,
        },
        store: StoreSettings {
            db: DbLocation::File(dir.path().join("runs.db")),
            ..StoreSettings::default()
        },
        ..ServerConfig::default()
    };
    config.events.streams.retry = Duration::from_millis(50);
    adjust(&mut config);
    let server = runtime.block_on(server::start(config)).unwrap();
    Setup {
        runtime,
        server: Some(server),
        _dir: dir,
    }
}

pub(crate) fn console(setup: &Setup, count: u32) -> Harness<'static, Console> {
    console_polling(setup, count, Duration::from_millis(300))
}

fn console_polling(setup: &Setup, count: u32, feed_poll: Duration) -> Harness<'static, Console> {
    harness(setup, console_config(setup, count, feed_poll))
}

/// The console's configuration for `setup`'s server: a launch form of `count` runs.
fn console_config(setup: &Setup, count: u32, feed_poll: Duration) -> ConsoleConfig {
    let mut config = ConsoleConfig::new(vec![setup.server.as_ref().unwrap().url()]);
    config.feed_poll = feed_poll;
    config.launch = Some(LaunchForm {
        task: "kittest task".into(),
        count,
        stagger_ms: 0,
        inline: false,
        server: 0,
        model: String::new(),
    });
    config
}

/// The console with `config`, on `setup`'s runtime.
fn harness(setup: &Setup, config: ConsoleConfig) -> Harness<'static, Console> {
    let spawner = Spawner::new(setup.runtime.handle().clone());
    Harness::builder()
        .with_size([1400.0, 900.0])
        // The synthetic text has emoji on purpose; the test fonts have none, so they show as
        // boxes ("tofu"), as they would on a system without an emoji font.
        .allow_missing_glyphs()
        .build_eframe(move |cc| Console::new(&cc.egui_ctx, None, config, spawner))
}

/// Steps the UI until `done` holds; fails after `limit`.
pub(crate) fn wait_for(
    harness: &mut Harness<'static, Console>,
    limit: Duration,
    what: &str,
    done: impl Fn(&Harness<'static, Console>) -> bool,
) {
    let start = Instant::now();
    loop {
        harness.step();
        if done(harness) {
            return;
        }
        if start.elapsed() >= limit {
            let model = harness.state().board();
            let server = &model.servers[0];
            panic!(
                "timed out waiting for {what}; requests {:?} rows {}, view {:?}, errors {:?}",
                server.requests.feed,
                server.requests.rows().len(),
                harness.state().ui_state().view,
                server.error
            );
        }
        std::thread::sleep(Duration::from_millis(15));
    }
}

/// Clicks the widget whose label starts with `label` until `done` holds: a frame that egui
/// lays out twice (a panel that changed size) can drop a click.
pub(crate) fn click_until(
    harness: &mut Harness<'static, Console>,
    label: &str,
    done: impl Fn(&Harness<'static, Console>) -> bool,
) {
    for _ in 0..5 {
        harness
            .query_all(
                egui_kittest::kittest::By::new()
                    .predicate(|node| node.label().is_some_and(|l| l.starts_with(label))),
            )
            .next()
            .unwrap_or_else(|| panic!("no widget labelled {label}…"))
            .click();
        harness.step();
        harness.step();
        if done(harness) {
            return;
        }
    }
    panic!("clicking {label} did nothing");
}

pub(crate) fn launch_from_the_ui(harness: &mut Harness<'static, Console>) {
    wait_for(
        harness,
        Duration::from_secs(10),
        "the server to answer",
        |h| h.state().board().servers[0].health.is_some(),
    );
    // A click can be lost to a frame laid out twice: clicked again until the form is open.
    click_until(harness, "Launch…", |h| {
        h.query_by_label("Launch").is_some()
    });
    harness.get_by_label("Launch").click();
    // One click per frame: the next one would land in the same frame and be lost.
    harness.step();
    harness.step();
}

#[test]
fn an_empty_console_explains_itself_and_offers_a_demo_batch() {
    let setup = setup(0.2, true);
    let mut harness = console(&setup, 2);
    harness.step();
    harness.get_by_label("No workers yet");
    wait_for(&mut harness, Duration::from_secs(10), "the server", |h| {
        h.state().board().servers[0].health.is_some()
    });
    harness.get_by_label("Launch demo batch").click();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "six demo cards",
        |h| h.state().board().workers().len() == 6,
    );
}

#[test]
fn launching_n_gives_n_cards_and_cancel_stops_one() {
    let setup = setup(0.3, true);
    let mut harness = console(&setup, 4);
    launch_from_the_ui(&mut harness);
    wait_for(&mut harness, Duration::from_secs(15), "four cards", |h| {
        h.state().board().workers().len() == 4 && h.query_all_by_label("Cancel").count() == 4
    });
    let first = harness.state().board().workers()[0].key.clone();
    harness.query_all_by_label("Cancel").next().unwrap().click();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "the first run to be cancelled",
        |h| {
            h.state()
                .board()
                .worker(&first)
                .is_some_and(|w| w.status == RunStatus::Cancelled)
        },
    );
    assert_eq!(harness.query_all_by_label("Cancel").count(), 3);
}

/// Launches three fast runs and checks cards, tok/s, the feed, EXPAND and the filter.
fn end_to_end(events_endpoint: bool) {
    // Runs of a second or two: a tok/s needs two updates more than the rate gate (100 ms) apart
    // on the console's clock, and a debug build's frames on a busy machine take up to 150 ms, so
    // a much faster run can finish between two frames.
    let setup = setup(20.0, events_endpoint);
    let mut harness = console(&setup, 3);
    launch_from_the_ui(&mut harness);
    let mut saw_rate: std::collections::HashSet<RunKey> = std::collections::HashSet::new();
    let start = Instant::now();
    loop {
        harness.step();
        let model = harness.state().board();
        for worker in model.workers() {
            if worker.rate.per_sec() > 0.0 {
                saw_rate.insert(worker.key.clone());
            }
        }
        let all_in_feed = model.workers().len() == 3
            && model
                .workers()
                .iter()
                .all(|w| model.feed.detail(&w.key).is_some());
        if all_in_feed {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "runs did not reach the feed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let model = harness.state().board();
    assert_eq!(
        saw_rate.len(),
        3,
        "every card showed tok/s > 0 at some point"
    );
    for worker in model.workers() {
        assert_eq!(worker.status, RunStatus::Completed);
        let detail = model.feed.detail(&worker.key).unwrap();
        assert_eq!(detail.events.last().unwrap().event, "stream_end");
        if !events_endpoint {
            assert!(
                worker.link.is_some(),
                "a per-run stream followed {}",
                worker.key.run_id
            );
        }
    }
    assert_eq!(model.finished_count(RunStatus::Completed), 3);

    // EXPAND shows the chain.
    let run_id = model.workers()[0].key.run_id.clone();
    harness.step();
    harness.query_all_by_label("Expand").next().unwrap().click();
    harness.step();
    harness.step();
    harness.get_by_label_contains("Chain of run-");
    harness.get_by_label("end: completed");

    // Esc closes the chain; `/` focuses the filter, which keeps only matching runs.
    harness.key_press(egui::Key::Escape);
    harness.step();
    assert!(harness.query_by_label_contains("Chain of run-").is_none());
    harness.key_press(egui::Key::Slash);
    harness.step();
    harness.step();
    let filter = harness.get_by_label("Filter");
    assert!(filter.is_focused(), "/ focuses the filter");
    filter.type_text(&run_id);
    harness.step();
    harness.step();
    let rows = harness.query_all_by_label("Expand").count()
        + harness.query_all_by_label("Collapse").count();
    assert_eq!(rows, 1, "only {run_id} matches");
}

#[test]
fn end_to_end_over_the_shared_events_stream() {
    end_to_end(true);
}

#[test]
fn end_to_end_over_per_run_streams_without_api_events() {
    end_to_end(false);
}

#[test]
fn an_idle_console_schedules_no_repaints() {
    let setup = setup(60.0, true);
    // A feed poll far away, so only the console's own repaint requests are seen.
    let mut harness = console_polling(&setup, 2, Duration::from_secs(3600));
    launch_from_the_ui(&mut harness);
    wait_for(
        &mut harness,
        Duration::from_secs(30),
        "both runs to finish and reach the feed",
        |h| {
            let model = h.state().board();
            model.workers().len() == 2
                && model.live_workers() == 0
                && model
                    .workers()
                    .iter()
                    .all(|w| model.feed.detail(&w.key).is_some())
        },
    );
    // While runs were live the console asked for a tick every second; now nothing moves.
    harness.run_steps(5);
    let delay = harness.output().viewport_output[&egui::ViewportId::ROOT].repaint_delay;
    assert!(
        delay > Duration::from_secs(60),
        "an idle console still repaints after {delay:?}"
    );
}

#[test]
fn keyboard_l_opens_the_launch_form_and_esc_closes_it_and_settings_open_from_the_bar() {
    let setup = setup(0.2, true);
    let mut harness = console(&setup, 2);
    harness.step();
    assert!(harness.query_by_label("Task").is_none());
    harness.key_press(egui::Key::L);
    harness.step();
    harness.step();
    let task = harness.get_by_label("Task");
    assert!(task.is_focused(), "L puts the cursor in the task field");
    assert_eq!(task.value().as_deref(), Some("kittest task"));
    harness.key_press(egui::Key::Escape);
    harness.step();
    assert!(
        harness.query_by_label("Task").is_none(),
        "Esc closes the form"
    );

    harness.get_by_label("Settings…").click();
    harness.step();
    harness.step();
    harness.get_by_label("Smoothing (α)");
    harness.get_by_label("Stalled after");
    harness.key_press(egui::Key::Escape);
    harness.step();
    assert!(harness.query_by_label("Smoothing (α)").is_none());
}

#[test]
fn a_server_added_in_settings_is_watched_and_remembered() {
    let first = setup(0.2, true);
    let second = setup(0.2, false);
    let second_url = second.server.as_ref().unwrap().url();
    let mut harness = console(&first, 2);
    harness.get_by_label("Settings…").click();
    harness.step();
    harness.step();
    harness.get_by_label("Add").focus();
    harness.step();
    harness.get_by_label("Add").type_text(&second_url);
    harness.step();
    harness.get_by_label("Watch").click();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "the added server to answer",
        |h| {
            let servers = &h.state().board().servers;
            servers.len() == 2 && servers[1].health.is_some()
        },
    );
    let model = harness.state().board();
    assert_eq!(model.servers[1].url, second_url);
    assert!(
        !model.servers[1]
            .health
            .as_ref()
            .unwrap()
            .has(runboard_api::Feature::Events)
    );
    assert_eq!(harness.state().ui_state().added_servers, vec![second_url]);
}

#[test]
fn the_models_view_reads_the_model_list_from_the_data_event_only() {
    let setup = setup(5.0, true);
    let mut harness = console(&setup, 1);
    wait_for(&mut harness, Duration::from_secs(10), "the server", |h| {
        h.state().board().servers[0].health.is_some()
    });
    harness.get_by_label("Models").click();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "the model list",
        |h| h.state().board().servers[0].models.is_some(),
    );
    harness.step();
    harness.get_by_label("Synth 14B Coder (Q5_K_M)");
    harness.get_by_label("synth-70b-instruct-fp8");
    let model = harness.state().board();
    assert_eq!(model.servers[0].models.as_ref().unwrap().models.len(), 5);
    // The job narrated its table for people (into the log); it is a query, not a worker.
    assert!(model.log.lines().iter().any(|l| l.text.contains("│ tok/s")));
    assert!(model.workers().is_empty());
    // Refresh runs the job again.
    harness.get_by_label("Refresh").click();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "a second list",
        |h| {
            let log = h.state().board().log.lines();
            log.iter()
                .filter(|l| l.text == "Model list complete")
                .count()
                == 2
        },
    );
}

#[test]
fn the_benchmark_view_starts_one_follows_it_and_closes_its_stream_when_hidden() {
    let setup = setup(25.0, true);
    let mut harness = console(&setup, 1);
    harness.state_mut().ui_state_mut().bench_tasks = 2;
    harness.get_by_label("Benchmark").click();
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the idle status",
        |h| h.state().board().servers[0].benchmark.status.is_some(),
    );
    assert_eq!(harness.state().view_streams_open(), 1);
    harness.step();
    harness.get_by_label("Start benchmark").click();
    wait_for(&mut harness, Duration::from_secs(60), "two results", |h| {
        let bench = &h.state().board().servers[0].benchmark;
        bench.ended() && bench.results.len() == 2
    });
    harness.step();
    harness.get_by_label("task_001_summarize");
    harness.get_by_label("task_002_translate");
    harness.get_by_label("Pass rate");
    harness.get_by_label("2 / 2 tasks · 100%");
    // Leaving the view closes its stream; the browser's connection budget depends on it.
    harness.get_by_label("Workers").click();
    harness.step();
    harness.step();
    assert_eq!(harness.state().view_streams_open(), 0);
}

#[test]
fn the_requests_view_streams_rows_keyed_by_request_id() {
    let setup = setup(1.0, true);
    let mut harness = console(&setup, 3);
    launch_from_the_ui(&mut harness);
    harness.get_by_label("Requests").click();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "three requests",
        |h| {
            let requests = &h.state().board().servers[0].requests;
            requests.feed == RequestsFeed::Streaming && requests.rows().len() == 3
        },
    );
    harness.step();
    let rows = harness.state().board().servers[0].requests.rows().to_vec();
    let ids: std::collections::HashSet<&str> =
        rows.iter().map(|r| r.request.request_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "no duplicate rows");
    for row in &rows {
        harness.get_by_label(&row.request.request_id);
    }
    // The server's badge in the bar and its requests stream both say live.
    assert!(harness.query_all_by_label("live").count() >= 2);
    // Sorting by a header is a click; a second click reverses it.
    harness.get_by_label("Out").click();
    harness.step();
    harness.step();
    assert_eq!(
        harness.state().ui_state().requests_sort.column,
        RequestColumn::Output
    );
    harness.get_by_label("Out").click();
    harness.step();
    harness.step();
    assert!(harness.state().ui_state().requests_sort.ascending);
}

#[test]
fn the_requests_view_polls_when_the_stream_is_off_and_explains_disabled_metrics() {
    let setup = setup_with(1.0, |config| config.active_requests.stream.enabled = false);
    let mut harness = console(&setup, 2);
    launch_from_the_ui(&mut harness);
    harness.get_by_label("Requests").click();
    wait_for(&mut harness, Duration::from_secs(20), "polled rows", |h| {
        let requests = &h.state().board().servers[0].requests;
        matches!(requests.feed, RequestsFeed::Polling(_)) && !requests.rows().is_empty()
    });
    harness.step();
    harness.get_by_label("polling");

    let setup = setup_with(1.0, |config| config.active_requests.enabled = false);
    let mut harness = console(&setup, 1);
    harness.get_by_label("Requests").click();
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the disabled notice",
        |h| {
            matches!(
                h.state().board().servers[0].requests.feed,
                RequestsFeed::Disabled(_)
            )
        },
    );
    harness.step();
    harness.get_by_label("metrics off");
}

#[test]
fn the_log_filters_pauses_and_a_click_selects_the_run() {
    let setup = setup(0.5, true);
    let mut harness = console(&setup, 2);
    harness.state_mut().ui_state_mut().log_open = true;
    launch_from_the_ui(&mut harness);
    wait_for(&mut harness, Duration::from_secs(15), "narration", |h| {
        h.state().board().log.lines().len() >= 4
    });
    click_until(&mut harness, "Pause", |h| {
        h.state().ui_state().log.paused_at.is_some()
    });
    let paused_at = harness.state().ui_state().log.paused_at.unwrap();
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "new lines while paused",
        |h| h.state().board().log.newest() > paused_at,
    );
    harness.step();
    let waiting = harness.state().board().log.newest() - paused_at;
    harness.get_by_label(&format!("Follow ({waiting} new)"));
    click_until(&mut harness, "Follow", |h| {
        h.state().ui_state().log.paused_at.is_none()
    });

    // A run filter keeps one run's lines; the level filter hides info.
    let first = harness.state().board().workers()[0].key.clone();
    let other = harness.state().board().workers()[1].key.run_id.clone();
    harness.state_mut().ui_state_mut().log.paused_at = Some(harness.state().board().log.newest());
    harness.step();
    let everywhere = harness.query_all_by_label(&other).count();
    harness.state_mut().ui_state_mut().log.run_filter = first.run_id.clone();
    harness.step();
    // Its card and feed entry still name it; its log lines are gone.
    assert!(harness.query_all_by_label(&other).count() < everywhere);
    click_until(&mut harness, "Show", |h| {
        h.query_by_label("error only").is_some()
    });
    click_until(&mut harness, "error only", |h| {
        h.state().ui_state().log.level == LogLevel::Error
    });
    assert_eq!(harness.state().ui_state().log.level, LogLevel::Error);
    harness.get_by_label("No line matches the filters.");
    harness.state_mut().ui_state_mut().log.level = LogLevel::All;
    harness.step();

    // A click on a line selects its run.
    let link = egui_kittest::kittest::By::new()
        .role(egui::accesskit::Role::Link)
        .label(&first.run_id);
    harness
        .query_all(link)
        .next()
        .expect("a log line of the run")
        .click();
    harness.step();
    harness.step();
    assert_eq!(harness.state().ui_state().selected.as_ref(), Some(&first));
}

#[test]
fn with_a_stream_budget_the_runs_beyond_it_are_polled_and_still_finish() {
    let setup = setup(1.5, false);
    let mut config = ConsoleConfig::new(vec![setup.server.as_ref().unwrap().url()]);
    config.feed_poll = Duration::from_millis(300);
    config.max_run_streams = Some(2);
    config.launch = Some(LaunchForm {
        task: "budget".into(),
        count: 4,
        stagger_ms: 0,
        inline: false,
        server: 0,
        model: String::new(),
    });
    let spawner = Spawner::new(setup.runtime.handle().clone());
    let mut harness = Harness::builder()
        .with_size([1400.0, 900.0])
        .allow_missing_glyphs()
        .build_eframe(move |cc| Console::new(&cc.egui_ctx, None, config, spawner));
    launch_from_the_ui(&mut harness);
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "two live and two polled",
        |h| {
            let workers = h.state().board().workers();
            workers.len() == 4
                && workers.iter().filter(|w| w.link.is_some()).count() == 2
                && workers.iter().filter(|w| w.polled).count() == 2
        },
    );
    harness.step();
    assert_eq!(harness.query_all_by_label("polled").count(), 2);
    // Polled cards still move (from the feed's polls) and every run ends on its card.
    wait_for(
        &mut harness,
        Duration::from_secs(60),
        "all four finished",
        |h| {
            let workers = h.state().board().workers();
            // Never more than two followed live at once, at any step.
            let live = workers
                .iter()
                .filter(|w| w.link.is_some() && !w.status.is_finished())
                .count();
            assert!(live <= 2, "{live} run streams open");
            workers.iter().all(|w| w.status.is_finished())
        },
    );
    let model = harness.state().board();
    assert!(model.workers().iter().all(|w| w.tokens_out > 0));
    assert_eq!(model.finished_count(RunStatus::Completed), 4);
}

#[test]
fn a_server_that_wants_a_token_gets_one_from_the_prompt() {
    let setup = setup_with(1.0, |config| {
        config.access.token = Some("open-sesame".into());
    });
    let mut harness = console(&setup, 1);
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the token prompt",
        |h| h.state().board().servers[0].needs_token.is_some(),
    );
    harness.step();
    harness.get_by_label("This server needs a token");
    harness.get_by_label("Token").focus();
    harness.step();
    harness.get_by_label("Token").type_text("open-sesame");
    harness.step();
    click_until(&mut harness, "Connect", |h| {
        h.state().board().servers[0].needs_token.is_none()
    });
    wait_for(
        &mut harness,
        Duration::from_secs(10),
        "the server's health",
        |h| h.state().board().servers[0].health.is_some(),
    );
    harness.step();
    assert!(
        harness
            .query_by_label("This server needs a token")
            .is_none()
    );
}

#[test]
fn the_upstreams_view_and_strip_show_what_a_model_server_says_of_itself() {
    use crate::support::scripted_server::{Reply, ScriptedServer};
    let setup_runtime = tokio::runtime::Runtime::new().unwrap();
    let model_server = setup_runtime.block_on(ScriptedServer::start(|n, request| {
        if request.path == "/metrics" {
            let page = format!(
                "vllm:num_requests_running{{model_name=\"org/m\"}} 5\n\
                 vllm:num_requests_waiting{{model_name=\"org/m\"}} 2\n\
                 vllm:kv_cache_usage_perc{{model_name=\"org/m\"}} 0.5\n\
                 vllm:generation_tokens_total{{model_name=\"org/m\"}} {}\n",
                n * 100
            );
            Reply::status(200, "OK", "text/plain", &page)
        } else {
            Reply::status(404, "Not Found", "text/plain", "")
        }
    }));
    let base = model_server.url("/v1");
    let scrape = base.clone();
    let setup = setup_with(1.0, move |config| {
        config.scrape.urls = vec![scrape];
        config.scrape.every = Duration::from_millis(100);
    });
    let mut harness = console(&setup, 1);
    wait_for(
        &mut harness,
        Duration::from_secs(15),
        "the model server's figures",
        |h| {
            h.state().board().servers[0]
                .upstreams
                .latest
                .first()
                .is_some_and(|u| u.figures.generation_tok_per_sec.is_some())
        },
    );
    // The strip in the summary bar, whatever the view.
    harness.get_by_label_contains("5 run · 2 wait · KV 50 %");
    click_until(&mut harness, "Upstreams", |h| {
        h.query_by_label(&base).is_some()
    });
    harness.get_by_label("vLLM");
    harness.get_by_label("KV cache");
}

#[test]
fn a_viewers_console_shows_runs_without_launch_or_cancel_and_a_worker_token_is_told_why_not() {
    const ADMIN: &str = "admin-token-0123456789";
    const VIEWER: &str = "viewer-token-0123456789";
    const WORKER: &str = "worker-token-0123456789";
    let setup = setup_with(0.2, |config| {
        config.access.tokens = runboard_server::parse_token_list(&format!(
            "alice admin {ADMIN}\nops viewer {VIEWER}\ngpu-box-3 worker {WORKER}\n"
        ))
        .unwrap();
        // Text only to admins.
        config.access.redact_viewers = Some(runboard_api::Redaction::Text);
    });
    // A run going on, launched by the admin, for the viewer to watch.
    let admin = runboard_api::ApiClient::new(&setup.url(), Some(ADMIN)).unwrap();
    setup
        .runtime
        .block_on(admin.create_run(&runboard_api::CreateRun {
            task: "watched by ops".into(),
            mode: runboard_api::RunMode::Queued,
            params: serde_json::json!({"iterations": 3}),
        }))
        .unwrap();
    let with_token = |token: &str| {
        let mut config = console_config(&setup, 1, Duration::from_millis(300));
        config.token = Some(token.to_owned());
        harness(&setup, config)
    };
    let card_and_access = |h: &Harness<'static, Console>| {
        !h.state().board().workers().is_empty() && h.state().board().servers[0].access.is_some()
    };

    let mut viewer = with_token(VIEWER);
    wait_for(
        &mut viewer,
        Duration::from_secs(10),
        "the run's card",
        card_and_access,
    );
    viewer.step();
    assert!(viewer.query_by_label("Launch…").is_none());
    assert!(viewer.query_by_label("Cancel all").is_none());
    assert!(viewer.query_by_label("Cancel").is_none());
    viewer.get_by_label("viewer");
    // The viewer is told why there is no text, on the bar and on the card.
    viewer.get_by_label("no text");
    viewer.get_by_label("text not sent by this server");
    // L opens nothing either.
    viewer.key_press(egui::Key::L);
    viewer.step();
    assert!(!viewer.state().ui_state().launch_open);
    drop(viewer);

    let mut admin_console = with_token(ADMIN);
    wait_for(
        &mut admin_console,
        Duration::from_secs(10),
        "the admin's card",
        card_and_access,
    );
    admin_console.step();
    admin_console.get_by_label("Launch…");
    admin_console.get_by_label("Cancel all");
    assert!(admin_console.query_by_label("viewer").is_none());
    assert!(admin_console.query_by_label("no text").is_none());
    drop(admin_console);

    let mut worker = with_token(WORKER);
    wait_for(
        &mut worker,
        Duration::from_secs(10),
        "the worker's refusal",
        |h| h.state().board().servers[0].needs_token.is_some(),
    );
    let why = worker.state().board().servers[0]
        .needs_token
        .clone()
        .unwrap();
    assert!(why.contains("gpu-box-3") && why.contains("worker"), "{why}");
}

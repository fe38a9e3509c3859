//! The board's rules with a fake clock: every `apply` gets the time it happens at.

use std::time::Duration;

use serde_json::json;

use super::*;
use runboard_api::{RunEvent, RunSummary};
use runboard_sse::SseError;

fn event(name: &str, data: &serde_json::Value) -> RunEvent {
    RunEvent::decode(name, &data.to_string()).unwrap()
}

fn created(run: &str) -> RunEvent {
    event(
        "run_created",
        &json!({"run_id": run, "task": "t", "status": "queued", "created_at": "2026-11-21T00:00:00Z"}),
    )
}

fn progress(run: &str, agent: &str, tokens: u64) -> RunEvent {
    event(
        "node_update",
        &json!({"run_id": run, "agent": agent, "iteration": 1, "tokens_out": tokens, "snippet": "…"}),
    )
}

fn board() -> Board {
    Board::new(
        &["http://a:9010".into(), "http://b:9010".into()],
        Settings::default(),
    )
}

fn on(server: ServerId, event: RunEvent) -> Inbound {
    Inbound::Event { server, event }
}

/// A connection-state change of server 0's `/api/events` (`run: None`) or of one run's stream.
fn link(run: Option<&str>, state: ConnectionState) -> Inbound {
    Inbound::Link {
        server: 0,
        run: run.map(str::to_owned),
        state,
    }
}

#[test]
fn cards_follow_progress_with_elapsed_and_time_to_first_token_on_the_servers_clock() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(
        on(
            0,
            event(
                "status",
                &json!({"run_id": "r1", "status": "running", "ts": "2026-11-21T00:00:01Z"}),
            ),
        ),
        1.0,
    );
    // The first tokens arrive in the same frame as `running`: arrival times would say 0 ms, the
    // server's say 750 ms.
    let first = json!({"run_id": "r1", "agent": "writer", "tokens_out": 40,
        "ts": "2026-11-21T00:00:01.750Z"});
    m.apply(on(0, event("node_update", &first)), 1.0);
    // A server that counts each step from 0: the next step's first tokens are not the run's.
    m.apply(on(0, progress("r1", "critic", 0)), 2.0);
    let next = json!({"run_id": "r1", "agent": "critic", "tokens_out": 100,
        "ts": "2026-11-21T00:00:03Z"});
    m.apply(on(0, event("node_update", &next)), 3.0);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(card.agent.as_deref(), Some("critic"));
    assert_eq!(card.tokens_out, 100);
    assert!((card.time_to_first_token().unwrap() - 0.75).abs() < 1e-6);
    assert!((card.elapsed(4.0).unwrap() - 3.0).abs() < 1e-9);
    assert_eq!(m.live_workers(), 1);
}

#[test]
fn tok_per_sec_is_an_average_of_the_deltas_between_updates() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(on(0, progress("r1", "writer", 0)), 1.2);
    m.apply(on(0, progress("r1", "writer", 40)), 2.0);
    m.apply(on(0, progress("r1", "writer", 100)), 3.0);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    // 50 tok/s from 1.2 → 2.0, then 0.3 × 60 + 0.7 × 50.
    assert!(
        (card.rate.per_sec() - 53.0).abs() < 1e-9,
        "{}",
        card.rate.per_sec()
    );
}

#[test]
fn a_server_that_sends_no_times_gives_no_time_to_first_token() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(
        on(
            0,
            event("status", &json!({"run_id": "r1", "status": "running"})),
        ),
        1.0,
    );
    m.apply(on(0, progress("r1", "writer", 40)), 1.5);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(card.time_to_first_token(), None);
}

#[test]
fn a_polled_run_takes_its_start_from_the_summary() {
    let mut m = board();
    let runs: Vec<RunSummary> = serde_json::from_value(json!([{"run_id": "r1", "status": "queued",
        "tokens_out": 0}]))
    .unwrap();
    m.apply(Inbound::Runs { server: 0, runs }, 1.0);
    let runs: Vec<RunSummary> =
        serde_json::from_value(json!([{"run_id": "r1", "status": "running",
        "started_at": "2026-11-21T00:00:02Z", "tokens_out": 0}]))
        .unwrap();
    m.apply(Inbound::Runs { server: 0, runs }, 2.0);
    let first = json!({"run_id": "r1", "tokens_out": 12, "ts": "2026-11-21T00:00:02.300Z"});
    m.apply(on(0, event("node_update", &first)), 3.0);
    let ttft = m
        .worker(&RunKey::new(0, "r1"))
        .unwrap()
        .time_to_first_token();
    assert!((ttft.unwrap() - 0.3).abs() < 1e-6, "{ttft:?}");
}

#[test]
fn a_silent_running_worker_is_stalled_with_its_age() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(on(0, progress("r1", "writer", 10)), 1.0);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(card.stalled_for(5.0, m.settings.stall_after_secs), None);
    assert_eq!(
        card.stalled_for(13.5, m.settings.stall_after_secs),
        Some(12.5)
    );
    let quiet = m.current_rate(13.5);
    assert!(quiet.abs() < f64::EPSILON, "a stalled fleet reads 0 tok/s");
    assert!(quiet.is_sign_positive(), "and not -0.0");
    m.apply(on(0, progress("r1", "writer", 12)), 14.0);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(
        card.stalled_for(15.0, 10.0),
        None,
        "an event ends the stall"
    );
    m.apply(
        on(
            0,
            event(
                "stream_end",
                &json!({"run_id": "r1", "status": "completed"}),
            ),
        ),
        15.0,
    );
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(
        card.stalled_for(100.0, 10.0),
        None,
        "a finished worker is not stalled"
    );
    assert!(
        card.rate.per_sec().abs() < f64::EPSILON,
        "a finished worker has no rate"
    );
}

#[test]
fn the_same_run_id_on_two_servers_is_two_cards_tagged_by_server() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(on(1, created("r1")), 0.0);
    m.apply(on(1, progress("r1", "critic", 7)), 1.0);
    assert_eq!(m.workers().len(), 2);
    assert_eq!(m.worker(&RunKey::new(0, "r1")).unwrap().tokens_out, 0);
    assert_eq!(m.worker(&RunKey::new(1, "r1")).unwrap().tokens_out, 7);
    assert_eq!(m.servers[1].label, "b:9010");
}

#[test]
fn a_run_is_counted_once_whether_status_or_stream_end_says_it_finished() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(
        on(
            0,
            event("status", &json!({"run_id": "r1", "status": "completed"})),
        ),
        1.0,
    );
    m.apply(
        on(
            0,
            event(
                "stream_end",
                &json!({"run_id": "r1", "status": "completed"}),
            ),
        ),
        1.0,
    );
    assert_eq!(m.finished_count(RunStatus::Completed), 1);
    assert_eq!(
        m.feed.entry(&RunKey::new(0, "r1")).unwrap().summary.status,
        RunStatus::Completed,
        "the feed follows live events"
    );
}

#[test]
fn stream_end_counts_once_and_asks_for_the_detail_at_once() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    let end = event("stream_end", &json!({"run_id": "r1", "status": "failed"}));
    m.apply(on(0, end.clone()), 1.0);
    m.apply(on(0, end), 1.5); // replayed after a reconnect
    assert_eq!(m.finished_count(RunStatus::Failed), 1);
    assert_eq!(m.feed.wanted(), [RunKey::new(0, "r1")]);
    m.apply(Inbound::DetailsAsked, 0.0);
    assert!(m.feed.wanted().is_empty());
}

#[test]
fn the_server_link_goes_live_reconnecting_resumed_and_lost() {
    let mut m = board();
    let change = |m: &mut Board, state: ConnectionState, now: f64| {
        m.apply(link(None, state), now);
    };
    change(&mut m, ConnectionState::Connecting { attempt: 0 }, 0.0);
    assert_eq!(m.servers[0].link, Some(Link::Connecting));
    change(&mut m, ConnectionState::Open, 0.1);
    assert_eq!(m.servers[0].link, Some(Link::Live));
    change(
        &mut m,
        ConnectionState::Reconnecting {
            delay: Duration::from_secs(2),
            attempt: 1,
            last_error: None,
        },
        5.0,
    );
    assert_eq!(
        m.servers[0].link.as_ref().unwrap().label(5.0),
        "reconnecting in 2 s"
    );
    change(&mut m, ConnectionState::Open, 7.0);
    m.apply(on(0, created("r9")), 7.1);
    m.apply(on(0, progress("r9", "writer", 3)), 7.2);
    assert_eq!(
        m.servers[0].link.as_ref().unwrap().label(8.0),
        "resumed (replayed 2)"
    );
    change(
        &mut m,
        ConnectionState::Failed(SseError::GaveUp {
            attempts: 5,
            last: "refused".into(),
        }),
        9.0,
    );
    assert!(matches!(m.servers[0].link, Some(Link::Lost(_))));
}

#[test]
fn a_per_run_stream_link_is_kept_on_its_card() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(link(Some("r1"), ConnectionState::Open), 0.1);
    m.apply(link(Some("r1"), ConnectionState::Closed), 3.0);
    assert_eq!(
        m.worker(&RunKey::new(0, "r1")).unwrap().link,
        Some(Link::Ended)
    );
}

#[test]
fn finished_cards_stay_until_cleared_by_hand_or_after_the_auto_clear_delay() {
    let mut m = board();
    m.apply(on(0, created("done")), 0.0);
    m.apply(on(0, created("going")), 0.0);
    m.apply(
        on(
            0,
            event(
                "stream_end",
                &json!({"run_id": "done", "status": "completed"}),
            ),
        ),
        1.0,
    );
    m.apply(Inbound::Tick, 1000.0);
    assert_eq!(m.workers().len(), 2, "no auto-clear by default");
    let settings = Settings {
        auto_clear_after_secs: Some(30.0),
        ..m.settings.clone()
    };
    m.apply(Inbound::Settings(settings), 0.0);
    m.apply(Inbound::Tick, 20.0);
    assert_eq!(m.workers().len(), 2);
    m.apply(Inbound::Tick, 31.5);
    assert_eq!(m.workers().len(), 1);
    assert!(
        m.worker(&RunKey::new(0, "going")).is_some(),
        "the index is rebuilt"
    );
    m.apply(
        on(
            0,
            event(
                "stream_end",
                &json!({"run_id": "going", "status": "cancelled"}),
            ),
        ),
        40.0,
    );
    m.apply(Inbound::ClearFinished, 40.0);
    assert!(m.workers().is_empty());
}

#[test]
fn narration_goes_to_the_log_tagged_with_its_run() {
    let mut m = board();
    m.apply(
        on(
            1,
            event(
                "narration",
                &json!({"run_id": "r1", "formatted": "writer takes over", "level": "info"}),
            ),
        ),
        2.0,
    );
    let line = m.log.lines().back().unwrap();
    assert_eq!(line.run, RunKey::new(1, "r1"));
    assert_eq!(line.text, "writer takes over");
}

#[test]
fn a_run_seen_first_mid_way_gets_a_card() {
    let mut m = board();
    m.apply(on(0, progress("late", "critic", 500)), 1.0);
    let card = m.worker(&RunKey::new(0, "late")).unwrap();
    assert_eq!(card.status, RunStatus::Running);
    assert_eq!(card.tokens_out, 500);
}

#[test]
fn a_poll_gives_cards_to_runs_already_going_but_not_to_finished_ones() {
    let mut m = board();
    let runs: Vec<RunSummary> = serde_json::from_value(json!([
        {"run_id": "going", "status": "running", "tokens_out": 40, "agent": "writer"},
        {"run_id": "waiting", "status": "queued"},
        {"run_id": "done", "status": "completed"}
    ]))
    .unwrap();
    m.apply(Inbound::Runs { server: 1, runs }, 5.0);
    assert_eq!(m.workers().len(), 2);
    let card = m.worker(&RunKey::new(1, "going")).unwrap();
    assert_eq!(
        (card.tokens_out, card.agent.as_deref()),
        (40, Some("writer"))
    );
    assert!(m.worker(&RunKey::new(1, "done")).is_none());
    assert_eq!(m.feed.len(), 3);
}

#[test]
fn a_replay_burst_after_a_stream_opens_moves_the_baseline_not_the_rate() {
    let mut m = board();
    // First seen mid-way by a poll, then followed on its own stream, which replays its history.
    let runs: Vec<RunSummary> =
        serde_json::from_value(json!([{"run_id": "r1", "status": "running", "tokens_out": 50}]))
            .unwrap();
    m.apply(Inbound::Runs { server: 0, runs }, 9.0);
    m.apply(link(Some("r1"), ConnectionState::Open), 10.0);
    // The server replays the run's history at once: 0 → 900 tokens within a frame.
    for (tokens, i) in [100, 400, 900].into_iter().zip([0.0, 1.0, 2.0]) {
        m.apply(on(0, progress("r1", "writer", tokens)), 10.0 + 0.01 * i);
    }
    // Live again: 50 tokens since the last replayed one (at 10.02 s).
    m.apply(on(0, progress("r1", "writer", 950)), 11.0);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert!(
        (card.rate.per_sec() - 50.0 / 0.98).abs() < 1e-9,
        "{}",
        card.rate.per_sec()
    );
    assert_eq!(card.tokens_out, 950);
}

#[test]
fn a_run_adopted_mid_way_shows_no_time_to_first_token() {
    let mut m = board();
    // The server gives times, but the first token came before the console saw the run.
    let runs: Vec<RunSummary> = serde_json::from_value(json!([{"run_id": "going",
        "status": "running", "started_at": "2026-11-21T00:00:00Z", "tokens_out": 40}]))
    .unwrap();
    m.apply(Inbound::Runs { server: 0, runs }, 5.0);
    let later = json!({"run_id": "going", "tokens_out": 80, "ts": "2026-11-21T00:00:05Z"});
    m.apply(on(0, event("node_update", &later)), 6.0);
    assert_eq!(
        m.worker(&RunKey::new(0, "going"))
            .unwrap()
            .time_to_first_token(),
        None
    );
}

#[test]
fn a_run_first_seen_through_an_update_shows_no_time_to_first_token() {
    let mut m = board();
    // The update comes before the first poll of the run list: the run's start went unseen.
    let later = json!({"run_id": "going", "agent": "writer", "tokens_out": 80,
                       "ts": "2026-11-21T00:00:05Z"});
    m.apply(on(0, event("node_update", &later)), 6.0);
    let runs: Vec<RunSummary> = serde_json::from_value(json!([{"run_id": "going",
        "status": "running", "started_at": "2026-11-21T00:00:00Z", "tokens_out": 80}]))
    .unwrap();
    m.apply(Inbound::Runs { server: 0, runs }, 6.5);
    let card = m.worker(&RunKey::new(0, "going")).unwrap();
    assert_eq!(card.tokens_out, 80);
    assert_eq!(
        card.time_to_first_token(),
        None,
        "not 5 s: that was a later update"
    );
}

#[test]
fn a_fresh_events_stream_replays_nothing_so_its_first_updates_count() {
    let mut m = board();
    m.apply(link(None, ConnectionState::Open), 10.0);
    m.apply(on(0, created("r1")), 10.01);
    m.apply(on(0, progress("r1", "writer", 0)), 10.02);
    m.apply(on(0, progress("r1", "writer", 30)), 10.3);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert!(
        card.rate.per_sec() > 0.0,
        "live events right after the open are not replays"
    );
}

#[test]
fn after_a_reconnect_the_replayed_updates_do_not_spike_the_rate() {
    let mut m = board();
    let change = |m: &mut Board, state, now| {
        m.apply(link(None, state), now);
    };
    change(&mut m, ConnectionState::Open, 0.0);
    m.apply(on(0, created("r1")), 0.1);
    m.apply(on(0, progress("r1", "writer", 0)), 0.2);
    m.apply(on(0, progress("r1", "writer", 50)), 1.2);
    change(
        &mut m,
        ConnectionState::Reconnecting {
            delay: Duration::from_secs(1),
            attempt: 1,
            last_error: None,
        },
        2.0,
    );
    change(&mut m, ConnectionState::Open, 5.0);
    // The server replays what was missed: 50 → 200 tokens inside one frame.
    m.apply(on(0, progress("r1", "writer", 120)), 5.01);
    m.apply(on(0, progress("r1", "writer", 200)), 5.01);
    m.apply(on(0, progress("r1", "writer", 240)), 6.01);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    // 0.3 × 40 tok/s + 0.7 × 50 tok/s, not a rate built on the 150 replayed tokens.
    assert!(
        (card.rate.per_sec() - 47.0).abs() < 1e-9,
        "{}",
        card.rate.per_sec()
    );
}

#[test]
fn the_total_rate_ignores_adopted_and_cleared_cards() {
    let mut m = board();
    m.apply(on(0, created("a")), 0.0);
    m.apply(on(0, progress("a", "writer", 0)), 0.5);
    m.apply(on(0, progress("a", "writer", 20)), 1.5);
    // A poll adopts a run that already has 5 000 tokens.
    let runs: Vec<RunSummary> =
        serde_json::from_value(json!([{"run_id": "b", "status": "running", "tokens_out": 5000}]))
            .unwrap();
    m.apply(Inbound::Runs { server: 0, runs }, 2.0);
    m.apply(on(0, progress("a", "writer", 40)), 2.5);
    assert!(
        m.total_rate.per_sec() < 100.0,
        "adoption is not generation: {}",
        m.total_rate.per_sec()
    );
}

#[test]
fn a_servers_store_state_shows_and_each_change_is_logged_once() {
    let mut m = board();
    let full = json!({"writable": false, "error": "database or disk is full", "since": "x"});
    m.apply(on(0, event("store_status", &full)), 1.0);
    let store = m.servers[0].store.clone().unwrap();
    assert!(!store.writable);
    assert!(m.servers[1].store.is_none(), "only that server");
    // Told again (a reconnect starts with it): no second line.
    m.apply(on(0, event("store_status", &full)), 2.0);
    m.apply(
        on(0, event("store_status", &json!({"writable": true}))),
        3.0,
    );
    m.apply(
        on(0, event("store_status", &json!({"writable": true}))),
        4.0,
    );
    let lines: Vec<(&str, &str)> = m
        .log
        .lines()
        .iter()
        .map(|line| (line.level.as_str(), line.text.as_str()))
        .collect();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(lines[0].0, "error");
    assert!(lines[0].1.contains("database or disk is full"), "{lines:?}");
    assert!(lines[1].1.contains("takes writes again"), "{lines:?}");
    assert!(m.log.lines().iter().all(|line| line.run.run_id.is_empty()));
    assert!(m.servers[0].store.as_ref().unwrap().writable);
    assert!(m.workers.is_empty(), "a notice is not a run");
}

#[test]
fn a_pruned_resume_is_said_in_the_log() {
    let mut m = board();
    m.apply(
        on(
            0,
            event(
                "pruned",
                &json!({"after": 3, "pruned_through": 90, "message": "…"}),
            ),
        ),
        1.0,
    );
    let line = m.log.lines().front().unwrap();
    assert_eq!(line.level, "warn");
    assert!(line.text.contains("after id 3 up to 90"), "{}", line.text);
    assert!(m.workers.is_empty());
}

#[test]
fn a_health_answer_with_a_failing_store_is_logged_like_the_event() {
    let mut m = board();
    let health: runboard_api::Health = serde_json::from_value(json!({
        "status": "degraded", "features": ["events"], "events_head": 4,
        "store": {"writable": false, "error": "database or disk is full"}
    }))
    .unwrap();
    m.apply(Inbound::Health { server: 0, health }, 1.0);
    assert!(!m.servers[0].store.as_ref().unwrap().writable);
    assert_eq!(m.log.lines().len(), 1);
    // The stream then says the same: no second line.
    let full = json!({"writable": false, "error": "database or disk is full"});
    m.apply(on(0, event("store_status", &full)), 2.0);
    assert_eq!(m.log.lines().len(), 1);
}

#[test]
fn a_streamed_card_that_missed_the_end_takes_the_final_figures_from_the_poll() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    m.apply(on(0, progress("r1", "writer", 40)), 1.0);
    m.apply(on(0, progress("r1", "writer", 80)), 2.0);
    // A running poll that lags behind the stream changes nothing.
    let lagging: Vec<RunSummary> = serde_json::from_value(json!([{"run_id": "r1",
        "status": "running", "tokens_out": 40}]))
    .unwrap();
    m.apply(
        Inbound::Runs {
            server: 0,
            runs: lagging,
        },
        2.5,
    );
    assert_eq!(m.worker(&RunKey::new(0, "r1")).unwrap().tokens_out, 80);
    // The stream was cut and the run ended meanwhile: the poll has the final count.
    let done: Vec<RunSummary> = serde_json::from_value(json!([{"run_id": "r1",
        "status": "completed", "tokens_out": 225, "agent": "finish", "snippet": "the end"}]))
    .unwrap();
    m.apply(
        Inbound::Runs {
            server: 0,
            runs: done.clone(),
        },
        5.0,
    );
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(
        (card.tokens_out, card.status, card.snippet.as_str()),
        (225, RunStatus::Completed, "the end")
    );
    assert_eq!(m.finished_count(RunStatus::Completed), 1);
    // The stream's own end, when it comes back, is not counted twice; nor is the next poll.
    m.apply(
        on(
            0,
            event("status", &json!({"run_id": "r1", "status": "completed"})),
        ),
        6.0,
    );
    m.apply(
        Inbound::Runs {
            server: 0,
            runs: done,
        },
        7.0,
    );
    assert_eq!(m.finished_count(RunStatus::Completed), 1);
    assert!(
        m.total_rate.per_sec() < 100.0,
        "missed tokens are not a burst of tok/s: {}",
        m.total_rate.per_sec()
    );
}

#[test]
fn a_refused_action_is_kept_in_the_log_after_the_next_poll() {
    let mut m = board();
    let message = "launch stopped after 2: POST http://a:9010/api/runs answered HTTP 503: All 3 \
                   worker slots are busy"
        .to_owned();
    m.apply(
        Inbound::ActionFailed {
            server: 0,
            message: message.clone(),
        },
        1.0,
    );
    assert_eq!(m.servers[0].error.as_deref(), Some(message.as_str()));
    m.apply(
        Inbound::Runs {
            server: 0,
            runs: Vec::new(),
        },
        2.0,
    );
    assert_eq!(m.servers[0].error, None, "the next poll clears the badge");
    let line = m.log.lines().back().unwrap();
    assert_eq!(
        (line.level.as_str(), line.text.as_str()),
        ("error", message.as_str())
    );
}

#[test]
fn reasoning_is_kept_apart_and_an_estimated_count_is_marked_until_the_server_confirms_it() {
    let mut m = board();
    m.apply(on(0, created("r1")), 0.0);
    let update = |data: serde_json::Value| on(0, event("node_update", &data));
    m.apply(
        update(
            json!({"run_id": "r1", "agent": "writer", "tokens_out": 12, "snippet": "",
                      "reasoning": "the user wants", "estimated": true}),
        ),
        1.0,
    );
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(card.reasoning, "the user wants");
    assert!(card.snippet.is_empty());
    assert!(card.estimated);
    m.apply(
        update(
            json!({"run_id": "r1", "agent": "writer", "tokens_out": 30, "snippet": "Salt wind",
                      "reasoning": "the user wants a haiku"}),
        ),
        2.0,
    );
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(card.reasoning, "the user wants a haiku");
    assert_eq!(card.snippet, "Salt wind");
    assert!(!card.estimated, "the usage figure came");
    // The next step does not reason: its updates carry no reasoning, and the old one goes.
    m.apply(
        update(
            json!({"run_id": "r1", "agent": "critic", "tokens_out": 34, "snippet": "Too short"}),
        ),
        3.0,
    );
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert!(card.reasoning.is_empty());
    assert_eq!(card.agent.as_deref(), Some("critic"));
}

#[test]
fn an_interrupted_step_puts_its_warning_on_the_card_and_other_warnings_do_not() {
    let mut m = board();
    m.apply(on(0, created("r1")), 1.0);
    m.apply(on(0, progress("r1", "writer", 3)), 1.5);
    let retry = json!({"run_id": "r1", "formatted": "writer: HTTP 429; try 2 of 3",
                       "level": "warn", "action": "upstream_retry"});
    m.apply(on(0, event("narration", &retry)), 2.0);
    assert!(m.worker(&RunKey::new(0, "r1")).unwrap().warning.is_none());
    let text = "writer (call 1) was interrupted: upstream gpu ended the answer without a finish \
                reason after 3 tokens";
    let interrupted = json!({"run_id": "r1", "formatted": text, "level": "warn",
                             "action": "step_interrupted"});
    m.apply(on(0, event("narration", &interrupted)), 2.5);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    assert_eq!(card.warning.as_deref(), Some(text));
    assert_eq!(m.log.lines().back().unwrap().level, "warn");
}

fn created_by(run: &str, worker: &str) -> RunEvent {
    event(
        "run_created",
        &json!({"run_id": run, "task": "t", "status": "queued",
                "created_at": "2026-11-21T00:00:00Z", "worker": worker}),
    )
}

fn status(run: &str, status: &str) -> RunEvent {
    event("status", &json!({"run_id": run, "status": status}))
}

/// One call of `worker` from `at`: created, running, 50 tokens a second for a second, done.
fn one_call(m: &mut Board, run: &str, worker: &str, at: f64) {
    m.apply(on(0, created_by(run, worker)), at);
    m.apply(on(0, status(run, "running")), at);
    m.apply(on(0, progress(run, "writer", 0)), at + 0.2);
    m.apply(on(0, progress(run, "writer", 25)), at + 0.7);
    m.apply(on(0, progress(run, "writer", 50)), at + 1.2);
    m.apply(on(0, status(run, "completed")), at + 1.3);
    m.apply(
        on(
            0,
            event("stream_end", &json!({"run_id": run, "status": "completed"})),
        ),
        at + 1.3,
    );
}

#[test]
fn a_worker_making_call_after_call_is_one_card_that_counts_them_and_keeps_its_rate() {
    let mut m = board();
    for n in 0..20 {
        one_call(&mut m, &format!("c{n}"), "gen-01", f64::from(n) * 1.5);
    }
    assert_eq!(
        m.cards().len(),
        1,
        "one card for the worker, not one per call"
    );
    let card = &m.cards()[0];
    assert_eq!(card.key.title(), "gen-01");
    assert_eq!((card.done, card.failed, card.tokens_done), (20, 0, 1000));
    assert!(card.live.is_empty());
    assert_eq!(card.current(), Some(&RunKey::new(0, "c19")));
    // Only the latest finished call is kept on the board; the rest live in the feed.
    assert_eq!(m.workers().len(), 1);
    assert_eq!(m.feed.len(), 20);
    // One sparkline across the calls: it did not start over with each.
    assert!(
        card.rate.history().len() > 20,
        "{}",
        card.rate.history().len()
    );
    assert_eq!(m.total_tokens(), 1000);
    // Between calls it reads 0; the next call's tokens bring it back.
    m.apply(on(0, created_by("c20", "gen-01")), 40.0);
    m.apply(on(0, progress("c20", "writer", 10)), 40.2);
    m.apply(on(0, progress("c20", "writer", 60)), 41.2);
    let card = &m.cards()[0];
    assert_eq!(card.live, vec![RunKey::new(0, "c20")]);
    assert!(card.rate.per_sec() > 0.0);
    assert!(m.current_rate(41.3) > 0.0);
    // A late update of a call the card moved on from makes no card.
    m.apply(on(0, progress("c3", "writer", 50)), 41.4);
    assert_eq!(m.cards().len(), 1);
}

#[test]
fn calls_in_flight_at_once_share_the_card_and_idle_workers_leave_the_grid() {
    let mut m = board();
    m.apply(on(0, created_by("a", "pool")), 0.0);
    m.apply(on(0, created_by("b", "pool")), 0.0);
    m.apply(on(0, created("solo")), 0.0);
    assert_eq!(m.cards().len(), 2);
    let pool = m
        .card_of(&CardKey::Worker {
            server: 0,
            name: "pool".into(),
        })
        .unwrap();
    assert_eq!(pool.live.len(), 2);
    assert_eq!(m.card_of_run(&RunKey::new(0, "b")).unwrap().key, pool.key);
    m.apply(on(0, status("a", "failed")), 1.0);
    m.apply(on(0, status("b", "completed")), 2.0);
    m.apply(on(0, status("solo", "completed")), 2.0);
    let pool = &m.cards()[0];
    assert_eq!((pool.done, pool.failed), (1, 1));
    assert_eq!(pool.idle_for(12.0), Some(10.0));
    // A finished run without a worker stays until cleared, as before; the idle worker leaves
    // once idle for longer than its setting (5 minutes by default).
    m.apply(Inbound::Tick, 2.0 + 299.0);
    assert_eq!(m.cards().len(), 2);
    m.apply(Inbound::Tick, 2.0 + 301.0);
    let left: Vec<&str> = m.cards().iter().map(|c| c.key.title()).collect();
    assert_eq!(left, ["solo"]);
    assert!(m.worker(&RunKey::new(0, "b")).is_none());
    assert_eq!(m.feed.len(), 3, "its calls stay in the feed");
}

#[test]
fn a_call_first_seen_by_a_poll_gets_its_own_ttft_and_elapsed_on_the_servers_clock() {
    let mut m = board();
    // The poll reads the store a moment before the stream delivers the run's first events: it
    // shows the call running with tokens already made.
    let polled: RunSummary = serde_json::from_value(json!({
        "run_id": "r1", "task": "t", "status": "running", "tokens_out": 30, "worker": "w",
        "created_at": "2026-11-21T00:00:00Z", "started_at": "2026-11-21T00:00:00Z"}))
    .unwrap();
    m.apply(
        Inbound::Runs {
            server: 0,
            runs: vec![polled],
        },
        100.0,
    );
    m.apply(on(0, created_by("r1", "w")), 100.05);
    let running = json!({"run_id": "r1", "status": "running", "ts": "2026-11-21T00:00:00Z"});
    m.apply(on(0, event("status", &running)), 100.05);
    let first = json!({"run_id": "r1", "tokens_out": 10, "ts": "2026-11-21T00:00:00.400Z"});
    m.apply(on(0, event("node_update", &first)), 100.1);
    let later = json!({"run_id": "r1", "tokens_out": 30, "ts": "2026-11-21T00:00:01Z"});
    m.apply(on(0, event("node_update", &later)), 100.1);
    let card = m.worker(&RunKey::new(0, "r1")).unwrap();
    let ttft = card.time_to_first_token().unwrap();
    assert!((ttft - 0.4).abs() < 1e-6, "{ttft}");
    // 1 s on the server's clock when the last update was made, 0.2 s later here.
    let elapsed = card.elapsed(100.3).unwrap();
    assert!((elapsed - 1.2).abs() < 1e-6, "{elapsed}");
    let done = json!({"run_id": "r1", "status": "completed", "ts": "2026-11-21T00:00:02.500Z"});
    m.apply(on(0, event("status", &done)), 100.2);
    let elapsed = m
        .worker(&RunKey::new(0, "r1"))
        .unwrap()
        .elapsed(500.0)
        .unwrap();
    assert!(
        (elapsed - 2.5).abs() < 1e-6,
        "a finished call's own length: {elapsed}"
    );
}

//! Active requests as the console holds them: rows keyed by `request_id`, updated in
//! place from each snapshot, with durations that tick between snapshots.

use std::collections::{HashMap, VecDeque};

use runboard_api::clock::parse_rfc3339;
use time::OffsetDateTime;

use super::link::Link;
use runboard_api::{ActiveRequest, ActiveRequests};

/// How long the in-flight history reaches back: the Requests view plots the last minutes.
pub const IN_FLIGHT_WINDOW_SECS: f64 = 300.0;

/// How the rows are coming in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum RequestsFeed {
    /// Not asked yet.
    #[default]
    Idle,
    /// Live from the stream.
    Streaming,
    /// Polled, because the stream is off or unreachable (the reason says which).
    Polling(String),
    /// The server does not track requests; its message says how to turn that on.
    Disabled(String),
}

/// One row.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    /// The request as last reported.
    pub request: ActiveRequest,
    /// Its age when the snapshot that last reported it was taken (server clock), if known.
    age_at_snapshot: Option<f64>,
    /// When that snapshot arrived (model clock).
    seen_at: f64,
}

impl RequestRow {
    /// How long it has been running at `now`: its age in the snapshot plus the time since.
    pub fn duration(&self, now: f64) -> Option<f64> {
        self.age_at_snapshot
            .map(|age| (age + (now - self.seen_at)).max(0.0))
    }
}

/// The requests of one server.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Requests {
    rows: Vec<RequestRow>,
    index: HashMap<String, usize>,
    /// How rows arrive.
    pub feed: RequestsFeed,
    /// The stream's connection, while streaming.
    pub link: Option<Link>,
    /// Snapshots applied.
    pub snapshots: u64,
    /// `(time, requests in flight)` at each change (model clock), oldest first, within
    /// [`IN_FLIGHT_WINDOW_SECS`]; a count holds until the next change.
    in_flight: VecDeque<(f64, usize)>,
}

impl Requests {
    /// The rows, in the order they first appeared.
    pub fn rows(&self) -> &[RequestRow] {
        &self.rows
    }

    /// Applies a snapshot at `now`: known rows are updated in place, new ones appended, gone
    /// ones removed; a request id never appears twice.
    pub fn apply(&mut self, snapshot: ActiveRequests, now: f64) {
        self.snapshots += 1;
        let taken = parse_rfc3339(&snapshot.timestamp);
        let mut fresh: HashMap<String, ActiveRequest> = HashMap::new();
        for request in snapshot.active_requests {
            // A server that lists an id twice: the later entry wins, still one row.
            fresh.insert(request.request_id.clone(), request);
        }
        self.rows
            .retain(|row| fresh.contains_key(&row.request.request_id));
        for row in &mut self.rows {
            if let Some(request) = fresh.remove(&row.request.request_id) {
                row.age_at_snapshot = age(&request, taken).or(row.age_at_snapshot);
                row.request = request;
                row.seen_at = now;
            }
        }
        let mut arrivals: Vec<ActiveRequest> = fresh.into_values().collect();
        arrivals.sort_by(|a, b| {
            (a.started_at.as_str(), a.request_id.as_str())
                .cmp(&(b.started_at.as_str(), b.request_id.as_str()))
        });
        for request in arrivals {
            self.rows.push(RequestRow {
                age_at_snapshot: age(&request, taken),
                request,
                seen_at: now,
            });
        }
        self.index = self
            .rows
            .iter()
            .enumerate()
            .map(|(i, row)| (row.request.request_id.clone(), i))
            .collect();
        self.sample(now);
    }

    /// The number of requests in flight over the last minutes as a step line: `[time, count]`
    /// oldest first, starting at the window's edge and reaching `now` (a count holds until a
    /// snapshot changes it).
    pub fn in_flight_steps(&self, now: f64) -> Vec<[f64; 2]> {
        let since = now - IN_FLIGHT_WINDOW_SECS;
        let mut steps: Vec<[f64; 2]> = Vec::with_capacity(self.in_flight.len() * 2 + 1);
        for &(at, count) in &self.in_flight {
            let at = at.max(since);
            #[allow(clippy::cast_precision_loss)] // Far fewer than 2^52 requests.
            let count = count as f64;
            if let Some(&[_, before]) = steps.last() {
                steps.push([at, before]);
            }
            steps.push([at, count]);
        }
        if let Some(&[at, count]) = steps.last()
            && now > at
        {
            steps.push([now, count]);
        }
        steps
    }

    /// Notes a change in the number in flight at `now`, and lets changes older than the window
    /// go but the last of them (the count that held as the window begins).
    fn sample(&mut self, now: f64) {
        let count = self.rows.len();
        if self.in_flight.back().is_none_or(|&(_, last)| last != count) {
            self.in_flight.push_back((now, count));
        }
        while self.in_flight.len() > 1 && now - self.in_flight[1].0 > IN_FLIGHT_WINDOW_SECS {
            self.in_flight.pop_front();
        }
    }

    /// One row by request id.
    pub fn row(&self, request_id: &str) -> Option<&RequestRow> {
        self.index.get(request_id).map(|&i| &self.rows[i])
    }

    /// Forgets every row (the server turned tracking off) and the history with them.
    pub fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
        self.in_flight.clear();
    }
}

/// Seconds between the request's start and the snapshot, both on the server's clock, so the
/// client's clock (and any skew) never enters.
fn age(request: &ActiveRequest, taken: Option<OffsetDateTime>) -> Option<f64> {
    let started = parse_rfc3339(&request.started_at)?;
    Some((taken? - started).as_seconds_f64().max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str, started: &str, out: u64) -> ActiveRequest {
        ActiveRequest {
            request_id: id.into(),
            model: "m".into(),
            resolved_model: None,
            streaming: true,
            input_tokens: 10,
            output_tokens: out,
            started_at: started.into(),
            run_id: None,
            agent: None,
            ..ActiveRequest::default()
        }
    }

    fn snapshot(at: &str, requests: Vec<ActiveRequest>) -> ActiveRequests {
        ActiveRequests {
            disabled: false,
            active_requests: requests,
            timestamp: at.into(),
            message: None,
        }
    }

    #[test]
    fn rows_are_updated_in_place_never_duplicated_and_gone_ones_leave() {
        let mut requests = Requests::default();
        requests.apply(
            snapshot(
                "2026-01-01T00:00:10Z",
                vec![
                    request("b", "2026-01-01T00:00:05Z", 1),
                    request("a", "2026-01-01T00:00:02Z", 1),
                ],
            ),
            100.0,
        );
        let ids: Vec<&str> = requests
            .rows()
            .iter()
            .map(|r| r.request.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"], "new rows come oldest first");
        requests.apply(
            snapshot(
                "2026-01-01T00:00:12Z",
                vec![
                    request("c", "2026-01-01T00:00:11Z", 0),
                    request("b", "2026-01-01T00:00:05Z", 40),
                    request("b", "2026-01-01T00:00:05Z", 41),
                ],
            ),
            102.0,
        );
        let ids: Vec<&str> = requests
            .rows()
            .iter()
            .map(|r| r.request.request_id.as_str())
            .collect();
        assert_eq!(ids, ["b", "c"]);
        assert_eq!(requests.row("b").unwrap().request.output_tokens, 41);
        assert!(requests.row("a").is_none());
    }

    #[test]
    fn durations_tick_from_the_servers_clock_not_ours() {
        let mut requests = Requests::default();
        requests.apply(
            snapshot(
                "2026-01-01T00:01:00Z",
                vec![request("a", "2026-01-01T00:00:30Z", 0)],
            ),
            5.0,
        );
        let row = requests.row("a").unwrap();
        assert_eq!(row.duration(5.0), Some(30.0));
        assert_eq!(row.duration(7.5), Some(32.5));
        requests.apply(snapshot("bad time", vec![request("z", "also bad", 0)]), 8.0);
        assert_eq!(requests.row("z").unwrap().duration(9.0), None);
    }

    #[test]
    fn the_in_flight_history_is_a_step_line_reaching_now_within_the_window() {
        let mut requests = Requests::default();
        let at = |t: u32| format!("2026-01-01T00:{:02}:{:02}Z", t / 60, t % 60);
        requests.apply(snapshot(&at(0), vec![request("a", &at(0), 0)]), 10.0);
        requests.apply(snapshot(&at(1), vec![request("a", &at(0), 1)]), 11.0);
        requests.apply(snapshot(&at(2), vec![request("a", &at(0), 2)]), 12.0);
        requests.apply(
            snapshot(
                &at(3),
                vec![request("a", &at(0), 3), request("b", &at(3), 0)],
            ),
            13.0,
        );
        requests.apply(snapshot(&at(5), vec![]), 15.0);
        assert_eq!(
            requests.in_flight_steps(20.0),
            [
                [10.0, 1.0],
                [13.0, 1.0],
                [13.0, 2.0],
                [15.0, 2.0],
                [15.0, 0.0],
                [20.0, 0.0]
            ],
            "a count holds until the next change, and the last one reaches now"
        );
        // Minutes later only the window is kept, starting with the count that held then.
        requests.apply(
            snapshot(&at(9), vec![]),
            15.0 + IN_FLIGHT_WINDOW_SECS + 10.0,
        );
        let steps = requests.in_flight_steps(15.0 + IN_FLIGHT_WINDOW_SECS + 10.0);
        assert_eq!(
            steps,
            [[25.0, 0.0], [15.0 + IN_FLIGHT_WINDOW_SECS + 10.0, 0.0]]
        );
        requests.clear();
        assert!(requests.in_flight_steps(1000.0).is_empty());
    }
}

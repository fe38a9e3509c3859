//! Active requests as the console holds them: rows keyed by `request_id`, updated in
//! place from each snapshot, with durations that tick between snapshots.

use std::collections::HashMap;

use runboard_api::clock::parse_rfc3339;
use time::OffsetDateTime;

use super::link::Link;
use runboard_api::{ActiveRequest, ActiveRequests};

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
    }

    /// One row by request id.
    pub fn row(&self, request_id: &str) -> Option<&RequestRow> {
        self.index.get(request_id).map(|&i| &self.rows[i])
    }

    /// Forgets every row (the server turned tracking off).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
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
}

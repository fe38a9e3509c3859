//! This server's place among the instances sharing its store: its heartbeat, the leases of the
//! others (a silent one's runs are taken over), and the list `/api/health` shows.
//!
//! Liveness is judged by whether another instance's heartbeat count moves within its lease, on
//! this instance's own monotonic clock: instances on different machines never compare clocks.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::producers::rng::SplitMix64;
use crate::producers::run_ids::{TAGS, instance_tag};
use crate::producers::runs::Runs;
use crate::store::health::StoreHealth;
use crate::store::{InstanceRow, InstanceState, Store};
use runboard_api::InstanceStatus;
use runboard_api::clock::{format_rfc3339, now_rfc3339};

/// The lease unless told otherwise (`--lease-secs`).
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// Heartbeats per lease: a lease survives a few missed beats.
const BEATS_PER_LEASE: u32 = 5;

/// Turns between looks for ended instances to forget.
const FORGET_EVERY: u64 = 200;

/// Ended instances are removed from the store after this long.
const FORGET_AFTER: time::Duration = time::Duration::days(1);

/// Who this instance is and how it is watched.
#[derive(Debug, Clone)]
pub struct Identity {
    /// New at every start.
    pub id: Arc<str>,
    /// The name people know it by.
    pub name: String,
    /// How long others wait without a heartbeat before they take its runs.
    pub lease: Duration,
}

impl Identity {
    /// A fresh id from `rng` for an instance named `name`.
    fn drawn(name: String, lease: Duration, rng: &mut SplitMix64) -> Self {
        Self {
            id: Arc::from(format!("i-{:010x}", rng.next_u64() >> 24)),
            name,
            lease,
        }
    }
}

/// This instance's identity for `store`: a fresh id, and on a shared store one whose run-id
/// tag ([`instance_tag`]) no alive instance has, so the instances' run ids never meet. Two
/// instances starting at the same moment could still draw one tag (1 in 1,024 for the pair);
/// with every tag taken (over 1,024 alive instances) the last draw stands.
pub async fn identity(
    store: &Store,
    name: String,
    lease: Duration,
) -> Result<Identity, crate::store::StoreError> {
    let mut rng = SplitMix64::from_entropy();
    if !store.is_shared() {
        return Ok(Identity::drawn(name, lease, &mut rng));
    }
    let taken: HashSet<u16> = store
        .instances()
        .await?
        .iter()
        .filter(|row| row.state == InstanceState::Alive)
        .map(|row| instance_tag(&row.id))
        .collect();
    Ok(untaken_identity(&taken, name, lease, &mut rng))
}

/// An identity whose tag is not in `taken`, if a few thousand draws find one.
fn untaken_identity(
    taken: &HashSet<u16>,
    name: String,
    lease: Duration,
    rng: &mut SplitMix64,
) -> Identity {
    let mut identity = Identity::drawn(name, lease, rng);
    for _ in 0..8 * usize::from(TAGS) {
        if !taken.contains(&instance_tag(&identity.id)) {
            break;
        }
        identity = Identity::drawn(identity.name, identity.lease, rng);
    }
    identity
}

/// The instances as last read, for `/api/health`.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    instances: Arc<RwLock<Vec<InstanceStatus>>>,
}

impl Roster {
    /// The instances, alive first.
    pub fn snapshot(&self) -> Vec<InstanceStatus> {
        self.instances
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `rows` as the list; on SQLite only this instance (earlier ones were this same
    /// server before a restart, not others sharing the store).
    fn set(&self, rows: &[InstanceRow], me: &str, shared: bool) {
        let list = rows
            .iter()
            .filter(|row| shared || *row.id == *me)
            .map(|row| InstanceStatus {
                id: row.id.clone(),
                name: row.name.clone(),
                this: *row.id == *me,
                state: row.state.as_str().to_owned(),
                started_at: row.started_at.clone(),
                heartbeat_at: row.heartbeat_at.clone(),
                lease_secs: Some(u64::try_from(row.lease_ms).unwrap_or(0).div_ceil(1000)),
                note: row.note.clone(),
            })
            .collect();
        *self
            .instances
            .write()
            .unwrap_or_else(PoisonError::into_inner) = list;
    }
}

/// Registers the instance and keeps it registered: heartbeats, and on a shared store the watch
/// over the others' leases. Returns the roster it keeps current.
pub async fn join(store: &Store, identity: &Identity) -> Result<Roster, crate::store::StoreError> {
    let lease_ms = i64::try_from(identity.lease.as_millis()).unwrap_or(i64::MAX);
    store
        .register_instance(&identity.id, &identity.name, &now_rfc3339(), lease_ms)
        .await?;
    let roster = Roster::default();
    if let Ok(rows) = store.instances().await {
        roster.set(&rows, &identity.id, store.is_shared());
    }
    Ok(roster)
}

/// The heartbeat and lease watch, until shutdown.
pub fn keep(
    store: Store,
    identity: Identity,
    runs: Runs,
    roster: Roster,
    health: StoreHealth,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut watch = Watch {
            store,
            identity,
            runs,
            roster,
            health,
            seen: HashMap::new(),
            turns: 0,
        };
        let beat = (watch.identity.lease / BEATS_PER_LEASE).max(Duration::from_millis(50));
        let mut ticks = tokio::time::interval(beat);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => watch.turn().await,
                () = shutdown.cancelled() => return,
            }
        }
    });
}

/// Records a clean stop: the others take this instance's unfinished runs at once.
pub async fn leave(store: &Store, identity: &Identity) {
    if let Err(error) = store.stop_instance(&identity.id, &now_rfc3339()).await {
        tracing::warn!(%error, "could not record this instance's stop");
    }
}

struct Watch {
    store: Store,
    identity: Identity,
    runs: Runs,
    roster: Roster,
    health: StoreHealth,
    /// Each other instance's heartbeat count and since when (here) it has not moved.
    seen: HashMap<String, (i64, Instant)>,
    turns: u64,
}

impl Watch {
    async fn turn(&mut self) {
        // The pool would wait its whole acquire timeout for a database that is gone; health
        // should say so sooner.
        let limit =
            (self.identity.lease / 2).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let beat = tokio::time::timeout(
            limit,
            self.store.heartbeat(&self.identity.id, &now_rfc3339()),
        )
        .await;
        match beat {
            Ok(Ok(true)) => self.health.set_link(None),
            Ok(Ok(false)) => self.rejoin().await,
            Ok(Err(error)) => {
                self.lost_sight();
                self.health.set_link(Some(&format!(
                    "the database cannot be reached: {}",
                    error.reason()
                )));
                return;
            }
            Err(_) => {
                self.lost_sight();
                self.health.set_link(Some(&format!(
                    "the database has not answered a heartbeat for {} ms",
                    limit.as_millis()
                )));
                return;
            }
        }
        let Ok(rows) = self.store.instances().await else {
            return;
        };
        self.roster
            .set(&rows, &self.identity.id, self.store.is_shared());
        if self.store.is_shared() {
            self.expire_silent(&rows).await;
            self.take_orphans().await;
        }
        self.turns += 1;
        if self.turns % FORGET_EVERY == 1 {
            self.forget_old().await;
        }
    }

    /// While this instance cannot reach the database, neither can it see the others beat (and
    /// likely they cannot beat either): their silence is timed again from when it can.
    fn lost_sight(&mut self) {
        self.seen.clear();
    }

    /// This instance was silent past its lease and another took its runs: they stop here,
    /// and it comes back as alive with nothing running.
    async fn rejoin(&mut self) {
        tracing::error!(
            instance = %self.identity.id,
            "this instance's lease expired (it was silent too long) and its runs were taken over \
             by another instance; they stop here"
        );
        self.runs.lose_all();
        let lease_ms = i64::try_from(self.identity.lease.as_millis()).unwrap_or(i64::MAX);
        let revived = self
            .store
            .revive_instance(&self.identity.id, &now_rfc3339(), lease_ms)
            .await;
        if let Err(error) = revived {
            tracing::warn!(%error, "could not register this instance again");
        }
    }

    /// Takes over the runs of alive instances whose heartbeat has not moved for their lease.
    async fn expire_silent(&mut self, rows: &[InstanceRow]) {
        let now = Instant::now();
        let alive: Vec<&InstanceRow> = rows
            .iter()
            .filter(|row| row.state == InstanceState::Alive && *row.id != *self.identity.id)
            .collect();
        self.seen
            .retain(|id, _| alive.iter().any(|row| &row.id == id));
        for row in alive {
            let since = match self.seen.get(&row.id) {
                Some((beats, since)) if *beats == row.beats => *since,
                _ => {
                    self.seen.insert(row.id.clone(), (row.beats, now));
                    continue;
                }
            };
            let lease = Duration::from_millis(u64::try_from(row.lease_ms).unwrap_or(0));
            if now.duration_since(since) < lease {
                continue;
            }
            let message = format!(
                "instance {} ({}) stopped sending heartbeats; its lease of {} s expired and \
                 instance {} took over its runs",
                row.name,
                row.id,
                lease.as_secs_f64(),
                self.identity.name
            );
            match self
                .runs
                .take_over(Some((&row.id, row.beats)), &message)
                .await
            {
                Ok(true) => {
                    tracing::warn!(instance = %row.id, name = %row.name, "{message}");
                    self.seen.remove(&row.id);
                }
                Ok(false) => {}
                Err(error) => {
                    tracing::warn!(%error, "could not take over a silent instance's runs");
                }
            }
        }
    }

    /// Runs of instances that stopped (or expired while their taker died) are taken at once.
    async fn take_orphans(&self) {
        let Ok(owners) = self.store.orphaned_owners().await else {
            return;
        };
        for (owner, name) in owners {
            let message = format!("interrupted: instance {name} ({owner}) stopped");
            if let Err(error) = self
                .runs
                .take_over(Some((&owner, i64::MIN)), &message)
                .await
            {
                tracing::warn!(%error, "could not take over a stopped instance's runs");
            }
        }
    }

    async fn forget_old(&self) {
        let before = format_rfc3339(time::OffsetDateTime::now_utc() - FORGET_AFTER);
        if let Err(error) = self.store.forget_instances(&before).await {
            tracing::debug!(%error, "could not forget old instances");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_instance_takes_a_run_id_tag_no_alive_instance_has() {
        let mut rng = SplitMix64::new(42);
        let free = 517;
        let taken: HashSet<u16> = (0..TAGS).filter(|&tag| tag != free).collect();
        let identity = untaken_identity(&taken, "b".into(), DEFAULT_LEASE, &mut rng);
        assert_eq!(instance_tag(&identity.id), free, "{}", identity.id);
        assert_eq!(identity.name, "b");
        let none_taken = untaken_identity(&HashSet::new(), "c".into(), DEFAULT_LEASE, &mut rng);
        assert!(none_taken.id.starts_with("i-") && none_taken.id.len() == 12);
    }
}

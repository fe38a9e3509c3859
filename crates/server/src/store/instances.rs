//! The servers that share a store: their registration, heartbeats and leases, the take-over of
//! a dead one's runs, and cancels sent to the instance that runs a run.

use sqlx::Row as _;

use super::{CANCEL_CHANNEL, FINISHED_SQL, RUN_COLUMNS, RunRow, Store, StoreError, failed};
use runboard_api::RunStatus;
use sqlx::AssertSqlSafe;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Serving and beating.
    Alive,
    /// Stopped cleanly; its unfinished runs are taken over at once.
    Stopped,
    /// Its lease ran out and another instance took over its runs.
    Expired,
}

impl InstanceState {
    /// Its name in the database and on `/api/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Alive => "alive",
            Self::Stopped => "stopped",
            Self::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Self {
        match text {
            "alive" => Self::Alive,
            "stopped" => Self::Stopped,
            _ => Self::Expired,
        }
    }
}

/// An instance as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceRow {
    /// Its id, new at every start.
    pub id: String,
    /// The name people know it by (`--instance-name`).
    pub name: String,
    /// When it started (RFC 3339, its own clock).
    pub started_at: String,
    /// Its last heartbeat (RFC 3339, its own clock).
    pub heartbeat_at: String,
    /// Heartbeats so far: others judge liveness by whether this moves, not by comparing
    /// clocks of different machines.
    pub beats: i64,
    /// Alive, stopped or expired.
    pub state: InstanceState,
    /// Its lease: how long others wait without a heartbeat before taking its runs.
    pub lease_ms: i64,
    /// Why it ended, once it has.
    pub note: Option<String>,
}

/// What a take-over moved to this instance.
#[derive(Debug, Default)]
pub struct TakenOver {
    /// Runs that were running: their work is lost with the instance; they are to be failed.
    pub running: Vec<RunRow>,
    /// Runs that were waiting: they are to be run here.
    pub queued: Vec<RunRow>,
}

const INSTANCE_COLUMNS: &str =
    "instance_id, name, started_at, heartbeat_at, beats, state, lease_ms, note";

/// Instances listed on `/api/health` after they ended, for a while.
const ENDED_KEPT: i64 = 20;

impl Store {
    /// Registers this instance as alive.
    pub async fn register_instance(
        &self,
        id: &str,
        name: &str,
        now: &str,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO instances ({INSTANCE_COLUMNS}) VALUES ($1, $2, $3, $4, 0, 'alive', $5, NULL)"
        )))
        .bind(id.to_owned())
        .bind(name.to_owned())
        .bind(now.to_owned())
        .bind(now.to_owned())
        .bind(lease_ms)
        .execute(&self.pool)
        .await
        .map_err(failed("registering this instance"))?;
        Ok(())
    }

    /// One heartbeat. False when the instance is no longer alive in the store (another one
    /// took over its runs while it was silent): it must stop its runs and register again.
    pub async fn heartbeat(&self, id: &str, now: &str) -> Result<bool, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(
            "UPDATE instances SET heartbeat_at = $2, beats = beats + 1 \
             WHERE instance_id = $1 AND state = 'alive'",
        )
        .bind(id.to_owned())
        .bind(now.to_owned())
        .execute(&self.pool)
        .await
        .map_err(failed("sending a heartbeat"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks this instance alive again after others took its runs over.
    pub async fn revive_instance(
        &self,
        id: &str,
        now: &str,
        lease_ms: i64,
    ) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE instances SET state = 'alive', heartbeat_at = $2, beats = beats + 1, \
             lease_ms = $3, note = NULL WHERE instance_id = $1",
        )
        .bind(id.to_owned())
        .bind(now.to_owned())
        .bind(lease_ms)
        .execute(&self.pool)
        .await
        .map_err(failed("registering this instance again"))?;
        Ok(())
    }

    /// Marks this instance stopped (a clean shutdown): others take its unfinished runs at once.
    pub async fn stop_instance(&self, id: &str, now: &str) -> Result<(), StoreError> {
        let _turn = self.write_turn().await;
        sqlx::query(
            "UPDATE instances SET state = 'stopped', heartbeat_at = $2, note = 'stopped' \
             WHERE instance_id = $1 AND state = 'alive'",
        )
        .bind(id.to_owned())
        .bind(now.to_owned())
        .execute(&self.pool)
        .await
        .map_err(failed("recording this instance's stop"))?;
        Ok(())
    }

    /// The instances alive, then the latest that ended, newest first.
    pub async fn instances(&self) -> Result<Vec<InstanceRow>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances \
             ORDER BY CASE WHEN state = 'alive' THEN 0 ELSE 1 END, heartbeat_at DESC"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(failed("reading the instances"))?;
        let mut ended = 0;
        let mut instances = Vec::new();
        for row in &rows {
            let instance = instance_from_row(row).map_err(failed("reading the instances"))?;
            if instance.state != InstanceState::Alive {
                ended += 1;
                if ended > ENDED_KEPT {
                    continue;
                }
            }
            instances.push(instance);
        }
        Ok(instances)
    }

    /// Removes instances that ended before `before` (RFC 3339) and own no unfinished run.
    pub async fn forget_instances(&self, before: &str) -> Result<u64, StoreError> {
        let _turn = self.write_turn().await;
        let done = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM instances WHERE state <> 'alive' AND heartbeat_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM runs WHERE runs.owner = instances.instance_id \
             AND runs.status NOT IN {FINISHED_SQL})"
        )))
        .bind(before.to_owned())
        .execute(&self.pool)
        .await
        .map_err(failed("forgetting old instances"))?;
        Ok(done.rows_affected())
    }

    /// Takes over the unfinished runs of `dead` (an instance seen at `beats` heartbeats, or
    /// one that stopped), and of runs stored before owners were kept when `dead` is `None`.
    /// Done under the sequence lock, so no write of the dead instance can land in between;
    /// an instance that beat again meanwhile is left alone (`None`).
    pub async fn take_over(
        &self,
        dead: Option<(&str, i64)>,
        me: &str,
        note: &str,
    ) -> Result<Option<TakenOver>, StoreError> {
        let _turn = self.write_turn().await;
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(failed("taking over runs"))?;
        sqlx::query("UPDATE meta SET value = value WHERE key = 'last_seq'")
            .execute(&mut *tx)
            .await
            .map_err(failed("taking over runs"))?;
        if let Some((dead, beats)) = dead {
            let ended = sqlx::query(
                "UPDATE instances SET state = CASE WHEN state = 'alive' THEN 'expired' \
                 ELSE state END, note = COALESCE(note, $3) \
                 WHERE instance_id = $1 AND (state <> 'alive' OR beats = $2)",
            )
            .bind(dead.to_owned())
            .bind(beats)
            .bind(note.to_owned())
            .execute(&mut *tx)
            .await
            .map_err(failed("taking over runs"))?;
            if ended.rows_affected() == 0 {
                return Ok(None);
            }
        }
        let mut query = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET owner = $1 WHERE status NOT IN {FINISHED_SQL} AND {} \
             RETURNING {RUN_COLUMNS}",
            if dead.is_some() {
                "owner = $2"
            } else {
                "owner IS NULL"
            }
        )))
        .bind(me.to_owned());
        if let Some((dead, _)) = dead {
            query = query.bind(dead.to_owned());
        }
        let rows = query
            .fetch_all(&mut *tx)
            .await
            .map_err(failed("taking over runs"))?;
        tx.commit().await.map_err(failed("taking over runs"))?;
        let mut taken = TakenOver::default();
        for row in &rows {
            let run = super::reads::run_from_row(row)?;
            if run.summary.status == RunStatus::Queued {
                taken.queued.push(run);
            } else {
                taken.running.push(run);
            }
        }
        taken.queued.sort_by_key(|run| run.ord);
        Ok(Some(taken))
    }

    /// Instances that stopped or expired and still own unfinished runs: ids and names.
    pub async fn orphaned_owners(&self) -> Result<Vec<(String, String)>, StoreError> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT DISTINCT runs.owner, instances.name FROM runs JOIN instances \
             ON instances.instance_id = runs.owner \
             WHERE instances.state <> 'alive' AND runs.status NOT IN {FINISHED_SQL}"
        )))
        .fetch_all(&self.pool)
        .await
        .map_err(failed("looking for orphaned runs"))?;
        rows.iter()
            .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(failed("looking for orphaned runs"))
    }

    /// Asks the instance `owner` to cancel `run_id` (PostgreSQL's `NOTIFY`), for `by` (a named
    /// token) when one asked.
    pub async fn send_cancel(
        &self,
        owner: &str,
        run_id: &str,
        by: Option<&str>,
    ) -> Result<(), StoreError> {
        // Names and ids hold no spaces (a token's name is one field of its line).
        let payload = match by {
            Some(name) => format!("{owner} {run_id} {name}"),
            None => format!("{owner} {run_id}"),
        };
        sqlx::query("SELECT pg_notify($1, $2)") // PostgreSQL only
            .bind(CANCEL_CHANNEL)
            .bind(payload)
            .execute(&self.pool)
            .await
            .map_err(failed("sending a cancel to another instance"))?;
        Ok(())
    }
}

fn instance_from_row(row: &sqlx::any::AnyRow) -> Result<InstanceRow, sqlx::Error> {
    let state: String = row.try_get("state")?;
    Ok(InstanceRow {
        id: row.try_get("instance_id")?,
        name: row.try_get("name")?,
        started_at: row.try_get("started_at")?,
        heartbeat_at: row.try_get("heartbeat_at")?,
        beats: row.try_get("beats")?,
        state: InstanceState::parse(&state),
        lease_ms: row.try_get("lease_ms")?,
        note: row.try_get("note")?,
    })
}

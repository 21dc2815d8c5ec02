//! Keeps this replica's in-memory index equal to the database.
//!
//! Every catalog write appends the ids of the entities it touched to
//! `catalog_changes` in the same transaction. This module applies that feed in
//! order: after each write on this replica (so a writer reads its own writes),
//! when PostgreSQL notifies, and once a second as a fallback. A replica that
//! fell behind the pruned part of the feed reloads everything.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use sea_orm::DatabaseBackend;

use super::index::{Doc, Index};
use super::search::{search_rows, SearchRow};
use super::store;
use crate::db::Db;

pub const NOTIFY_CHANNEL: &str = "stagedoor_catalog";
/// Changes applied per round trip; small enough that a batch's parsed entities stay small.
const BATCH: u64 = 500;

pub struct Feed {
    db: Db,
    index: Arc<RwLock<Index>>,
    last_seq: tokio::sync::Mutex<i64>,
}

impl Feed {
    pub fn new(db: Db, index: Arc<RwLock<Index>>) -> Feed {
        Feed {
            db,
            index,
            last_seq: tokio::sync::Mutex::new(-1),
        }
    }

    /// Loads every entity, then follows the feed from where the load began.
    pub async fn load_all(&self) -> anyhow::Result<()> {
        let mut last = self.last_seq.lock().await;
        self.reload(&mut last).await
    }

    async fn reload(&self, last: &mut i64) -> anyhow::Result<()> {
        // Read the position first: changes made during the load are applied again, harmlessly.
        let seq = store::max_change_seq(&self.db.conn).await?;
        let mut fresh = Index::default();
        let mut after = 0;
        loop {
            let rows = store::final_rows_after(&self.db.conn, after, BATCH).await?;
            let Some(tail) = rows.last() else { break };
            after = tail.id;
            for (doc, rows) in prepare(rows).await {
                fresh.upsert_rows(doc, rows);
            }
            fresh.settle();
        }
        *self.index.write() = fresh;
        *last = seq;
        Ok(())
    }

    /// Applies every change not yet applied. Returns how many entities changed.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut last = self.last_seq.lock().await;
        if *last < 0 {
            self.reload(&mut last).await?;
            return Ok(self.index.read().len());
        }
        let mut applied = 0;
        loop {
            let changes = store::changes_after(&self.db.conn, *last, BATCH).await?;
            let Some(tail) = changes.last() else { break };
            if let Some(first) = changes.first() {
                if first.seq > *last + 1 {
                    let min = store::min_change_seq(&self.db.conn).await?.unwrap_or(0);
                    if min > *last + 1 {
                        tracing::warn!(
                            "catalog change feed was pruned past this replica; reloading"
                        );
                        self.reload(&mut last).await?;
                        return Ok(self.index.read().len());
                    }
                }
            }
            let tail_seq = tail.seq;
            let mut ids: Vec<i64> = changes.iter().map(|c| c.entity_id).collect();
            ids.sort_unstable();
            ids.dedup();
            let rows = store::final_rows_by_ids(&self.db.conn, &ids).await?;
            let found: std::collections::HashSet<i64> = rows.iter().map(|r| r.id).collect();
            let docs = prepare(rows).await;
            {
                let mut index = self.index.write();
                for id in &ids {
                    if !found.contains(id) {
                        if let Ok(id) = u32::try_from(*id) {
                            index.remove(id);
                        }
                    }
                }
                for (doc, rows) in docs {
                    index.upsert_rows(doc, rows);
                }
                index.settle();
            }
            applied += ids.len();
            *last = tail_seq;
        }
        Ok(applied)
    }

    /// Follows the feed until `shutdown` fires.
    pub async fn follow(self: Arc<Self>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut listener = None;
        if self.db.backend() == DatabaseBackend::Postgres {
            let pool = self.db.conn.get_postgres_connection_pool();
            match sqlx::postgres::PgListener::connect_with(pool).await {
                Ok(mut l) => match l.listen(NOTIFY_CHANNEL).await {
                    Ok(()) => listener = Some(l),
                    Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling the change feed"),
                },
                Err(e) => tracing::warn!(error = %e, "LISTEN failed; polling the change feed"),
            }
        }
        loop {
            let wait = async {
                match listener.as_mut() {
                    Some(l) => {
                        let _ = tokio::time::timeout(Duration::from_secs(1), l.recv()).await;
                    }
                    None => tokio::time::sleep(Duration::from_secs(1)).await,
                }
            };
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = wait => {}
            }
            if let Err(e) = self.catch_up().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "applying the catalog change feed failed"
                );
            }
        }
    }
}

/// Parses rows and computes their search rows outside any lock, on every core.
async fn prepare(rows: Vec<store::FinalRow>) -> Vec<(Doc, Vec<SearchRow>)> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(8);
    if workers < 2 || rows.len() < 64 {
        return rows.into_iter().filter_map(to_indexed).collect();
    }
    let per = rows.len().div_ceil(workers);
    let mut rows = rows;
    let mut tasks = Vec::with_capacity(workers);
    while !rows.is_empty() {
        let part: Vec<store::FinalRow> = rows.drain(..per.min(rows.len())).collect();
        tasks.push(tokio::task::spawn_blocking(move || {
            part.into_iter().filter_map(to_indexed).collect::<Vec<_>>()
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        match t.await {
            Ok(part) => out.extend(part),
            Err(e) => tracing::error!(error = %e, "preparing catalog entities failed"),
        }
    }
    out
}

fn to_indexed(row: store::FinalRow) -> Option<(Doc, Vec<SearchRow>)> {
    let (doc, value) = to_doc(row)?;
    let rows = search_rows(&value);
    Some((doc, rows))
}

fn to_doc(row: store::FinalRow) -> Option<(Doc, serde_json::Value)> {
    let id = u32::try_from(row.id).ok()?;
    if row.final_entity.is_empty() {
        return None;
    }
    let value: serde_json::Value = serde_json::from_str(&row.final_entity).ok()?;
    Some((
        Doc::new(id, row.uid, row.entity_ref, row.final_entity.as_bytes()),
        value,
    ))
}

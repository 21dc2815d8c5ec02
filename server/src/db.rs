//! Connects to SQLite or PostgreSQL and applies migrations safely.
//!
//! SQLite runs in WAL mode with a busy timeout; a single node writes. On
//! PostgreSQL, migrations run under a session advisory lock so that replicas
//! starting together migrate once, and catalog writes serialize on a
//! transaction advisory lock.

use std::str::FromStr;
use std::time::Duration;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction,
    SqlxPostgresConnector, SqlxSqliteConnector, TransactionTrait,
};
use secrecy::ExposeSecret;

use crate::config::DatabaseConfig;

const MIGRATION_LOCK: i64 = 0x5354_4147_4544_4f01;
const CATALOG_WRITE_LOCK: i64 = 0x5354_4147_4544_4f02;

/// The database handle and the in-process half of the write lock.
#[derive(Clone, Debug)]
pub struct Db {
    pub conn: DatabaseConnection,
    write_lock: std::sync::Arc<tokio::sync::Mutex<()>>,
}

/// Held for the whole of a catalog write transaction.
pub struct WriteGuard<'a> {
    pub txn: DatabaseTransaction,
    _local: tokio::sync::MutexGuard<'a, ()>,
}

impl Db {
    pub async fn connect(config: &DatabaseConfig, pool_size: u32) -> anyhow::Result<Db> {
        let conn = match config {
            DatabaseConfig::Sqlite { path } => {
                use sqlx::sqlite::{
                    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
                };
                let (options, size) = match path {
                    None => (SqliteConnectOptions::from_str("sqlite::memory:")?, 1),
                    Some(p) => {
                        if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                            std::fs::create_dir_all(dir).map_err(|e| {
                                anyhow::anyhow!("cannot create {}: {e}", dir.display())
                            })?;
                        }
                        (
                            SqliteConnectOptions::new()
                                .filename(p)
                                .create_if_missing(true)
                                .journal_mode(SqliteJournalMode::Wal)
                                .synchronous(SqliteSynchronous::Normal),
                            pool_size,
                        )
                    }
                };
                // Reads are served from the in-memory index, so SQLite's page cache only
                // serves writes: a small one keeps memory low on every connection.
                let options = options
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    .pragma("cache_size", "-256")
                    // Bulk statements are large compiled programs; cache only a few.
                    .statement_cache_capacity(8);
                let pool = SqlitePoolOptions::new()
                    .max_connections(size)
                    .min_connections(if path.is_none() { 1 } else { 0 })
                    .idle_timeout(if path.is_none() {
                        None
                    } else {
                        Some(Duration::from_secs(600))
                    })
                    .max_lifetime(if path.is_none() {
                        None
                    } else {
                        Some(Duration::from_secs(3600))
                    })
                    .connect_with(options)
                    .await?;
                SqlxSqliteConnector::from_sqlx_sqlite_pool(pool)
            }
            DatabaseConfig::Postgres { url } => {
                use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
                let options = PgConnectOptions::from_str(url.expose_secret())
                    .map_err(|e| anyhow::anyhow!("backend.database.connection: {e}"))?;
                let pool = PgPoolOptions::new()
                    .max_connections(pool_size)
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(options)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot connect to PostgreSQL: {e}"))?;
                SqlxPostgresConnector::from_sqlx_postgres_pool(pool)
            }
        };
        Ok(Db {
            conn,
            write_lock: Default::default(),
        })
    }

    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// Applies pending migrations, one replica at a time.
    pub async fn migrate_up(&self) -> anyhow::Result<()> {
        self.with_migration_lock(|db| Box::pin(async move { Migrator::up(db, None).await }))
            .await
    }

    /// Rolls back the most recent migration.
    pub async fn migrate_down(&self) -> anyhow::Result<()> {
        self.with_migration_lock(|db| Box::pin(async move { Migrator::down(db, Some(1)).await }))
            .await
    }

    /// Each known migration and whether it is applied.
    pub async fn migration_status(&self) -> anyhow::Result<Vec<(String, bool)>> {
        let applied: Vec<String> = match Migrator::get_applied_migrations(&self.conn).await {
            Ok(list) => list.iter().map(|m| m.name().to_string()).collect(),
            Err(_) => vec![],
        };
        Ok(Migrator::migrations()
            .iter()
            .map(|m| {
                (
                    m.name().to_string(),
                    applied.contains(&m.name().to_string()),
                )
            })
            .collect())
    }

    /// Refuses a schema newer than this binary knows: another version migrated it.
    pub async fn check_schema(&self) -> anyhow::Result<()> {
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|m| m.name().to_string())
            .collect();
        let rows = self
            .conn
            .query_all(sea_orm::Statement::from_string(
                self.backend(),
                "SELECT version FROM seaql_migrations",
            ))
            .await?;
        for row in rows {
            let version: String = row.try_get("", "version")?;
            if !known.contains(&version) {
                anyhow::bail!(
                    "the database has migration {version}, which this version of stagedoor does not know; run a newer stagedoor"
                );
            }
        }
        Ok(())
    }

    async fn with_migration_lock<F>(&self, f: F) -> anyhow::Result<()>
    where
        F: for<'a> FnOnce(
            &'a DatabaseConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), sea_orm::DbErr>> + Send + 'a>,
        >,
    {
        if self.backend() != DatabaseBackend::Postgres {
            let _local = self.write_lock.lock().await;
            return Ok(f(&self.conn).await?);
        }
        let pool = self.conn.get_postgres_connection_pool();
        let mut lock_conn = pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *lock_conn)
            .await?;
        let result = f(&self.conn).await;
        let unlock = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *lock_conn)
            .await;
        result?;
        unlock?;
        Ok(())
    }

    /// Runs a write outside the catalog. On SQLite it takes the in-process
    /// write lock first: SQLite refuses a transaction's upgrade to writing when
    /// another connection wrote meanwhile, so this process's writers take turns.
    pub async fn write_turn<T>(&self, write: impl std::future::Future<Output = T>) -> T {
        let _turn = if self.backend() == DatabaseBackend::Sqlite {
            Some(self.write_lock.lock().await)
        } else {
            None
        };
        write.await
    }

    /// Begins a catalog write: one writer at a time, across replicas on PostgreSQL.
    pub async fn begin_write(&self) -> Result<WriteGuard<'_>, sea_orm::DbErr> {
        let local = self.write_lock.lock().await;
        let txn = self.conn.begin().await?;
        if self.backend() == DatabaseBackend::Postgres {
            txn.execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock({CATALOG_WRITE_LOCK})"
            ))
            .await?;
        }
        Ok(WriteGuard { txn, _local: local })
    }
}

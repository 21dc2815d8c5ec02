//! Database migrations, shared by SQLite and PostgreSQL.
//!
//! Each migration is one file named `m<yyyymmdd>_<nnnnnn>_<what>.rs` and always has a `down`.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_catalog;
mod m20261124_000001_auth;
mod m20261125_000001_scaffolder;

pub struct Migrator;

#[sea_orm_migration::async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_catalog::Migration),
            Box::new(m20261124_000001_auth::Migration),
            Box::new(m20261125_000001_scaffolder::Migration),
        ]
    }
}

//! PostgreSQL's SQL of each migration of `store::migrations`, from the
//! `migrations/` directory beside this file.

use crate::store::migrations::Scripts;

pub(super) const SCRIPTS: Scripts = Scripts {
    ledger: "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version BIGINT PRIMARY KEY,
                 name TEXT NOT NULL,
                 applied_at TEXT NOT NULL
             );",
    migrations: include!(concat!(env!("OUT_DIR"), "/postgresql_migrations.rs")),
};

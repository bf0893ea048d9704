//! The store conformance suite against SqlStore on SQLite, PostgreSQL and MySQL/MariaDB.
#![cfg(all(
    feature = "axum",
    any(feature = "sqlite", feature = "postgres", feature = "mysql")
))]

mod common;

use std::sync::Arc;

use tokio::sync::OnceCell;
use vishnu::{SessionStore, SqlStore};

async fn connect(url: &str, table: &OnceCell<String>) -> Arc<dyn SessionStore> {
    let table = table
        .get_or_init(|| async { common::unique_table("vishnu_conformance") })
        .await;
    let store = SqlStore::connect(url)
        .await
        .expect("connect")
        .with_table(table)
        .expect("table name");
    store.migrate().await.expect("migrate");
    Arc::new(store)
}

#[cfg(feature = "sqlite")]
async fn sqlite() -> Option<Arc<dyn SessionStore>> {
    static TABLE: OnceCell<String> = OnceCell::const_new();
    let dir = std::env::temp_dir().join(format!("vishnu-conformance-{}.db", std::process::id()));
    Some(connect(&format!("sqlite://{}", dir.display()), &TABLE).await)
}

#[cfg(feature = "postgres")]
async fn postgres() -> Option<Arc<dyn SessionStore>> {
    static TABLE: OnceCell<String> = OnceCell::const_new();
    let url = common::server_url("VISHNU_POSTGRES_URL")?;
    Some(connect(&url, &TABLE).await)
}

#[cfg(feature = "mysql")]
async fn mysql() -> Option<Arc<dyn SessionStore>> {
    static TABLE: OnceCell<String> = OnceCell::const_new();
    let url = common::server_url("VISHNU_MYSQL_URL")?;
    Some(connect(&url, &TABLE).await)
}

#[cfg(feature = "sqlite")]
conformance_suite!(sqlite_store, sqlite, native_ttl = false, byte_limit = true);
#[cfg(feature = "postgres")]
conformance_suite!(
    postgres_store,
    postgres,
    native_ttl = false,
    byte_limit = true
);
#[cfg(feature = "mysql")]
conformance_suite!(mysql_store, mysql, native_ttl = false, byte_limit = true);

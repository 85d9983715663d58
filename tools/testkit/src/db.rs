//! Throw-away databases on a Postgres server we may `CREATE DATABASE` on:
//! every test and every benchmark run gets an empty one of its own, named
//! `<prefix>_<random hex>`, and drops it when done.

use anyhow::Context;
use sqlx::{Connection, PgConnection};

/// A database this harness created.
#[derive(Debug)]
pub struct FreshDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database (the admin URL with its path replaced).
    pub url: String,
}

/// Whether `name` is one we make: a prefix of lowercase letters and
/// digits starting with a letter, `_`, 32 lowercase hex digits.
/// Names are formatted into SQL (`CREATE DATABASE` takes no parameters),
/// so nothing else is ever accepted.
pub fn is_ours(name: &str) -> bool {
    name.split_once('_').is_some_and(|(prefix, id)| {
        prefix
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && id.len() == 32
            && id
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

impl FreshDatabase {
    /// `CREATE DATABASE <prefix>_<32 hex>` through `admin_url`.
    pub async fn create(admin_url: &str, prefix: &str) -> anyhow::Result<Self> {
        let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
        anyhow::ensure!(
            is_ours(&name),
            "a database prefix is lowercase letters and digits: {prefix:?}"
        );
        let mut url = reqwest::Url::parse(admin_url)
            .with_context(|| format!("the admin database URL {admin_url:?} is not a URL"))?;
        url.set_path(&format!("/{name}"));
        let mut conn = PgConnection::connect(admin_url)
            .await
            .context("connecting to the admin database")?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .with_context(|| format!("CREATE DATABASE {name}"))?;
        let _ = conn.close().await;
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url: url.to_string(),
        })
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the database (closing any connection still open to it).
    pub async fn drop_now(self) -> anyhow::Result<()> {
        drop_database(&self.admin_url, &self.name).await
    }
}

/// Applies the workspace's migrations (`migrations/`, embedded at build
/// time): what `region-core migrate` does, for a database a benchmark
/// baseline or a test fills without a region core.
pub async fn migrate(db: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::migrate!("../../migrations")
        .run(db)
        .await
        .context("applying migrations/")?;
    Ok(())
}

/// Drops database `name` if this harness made it (see [`is_ours`]);
/// anything else is left alone.
pub async fn drop_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    if !is_ours(name) {
        return Ok(());
    }
    let mut conn = PgConnection::connect(admin_url)
        .await
        .context("connecting to the admin database")?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .with_context(|| format!("DROP DATABASE {name}"))?;
    let _ = conn.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_names_are_ever_formatted_into_sql() {
        let ours = format!("e2e_{}", uuid::Uuid::new_v4().simple());
        assert!(is_ours(&ours));
        for bad in [
            "postgres",
            "2e_0123456789abcdef0123456789abcdef",
            "e2e_",
            "_0123456789abcdef0123456789abcdef",
            "E2E_0123456789abcdef0123456789abcdef",
            "e2e_0123456789ABCDEF0123456789abcdef",
            "e2e_0123456789abcdef0123456789abcdef; DROP DATABASE postgres",
            "e2e_0123456789abcdef",
        ] {
            assert!(!is_ours(bad), "{bad}");
        }
    }

    /// Against the shared server (`TEST_DATABASE_URL`): created, usable,
    /// dropped.
    #[tokio::test]
    async fn a_fresh_database_is_created_and_dropped() {
        let admin = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
        let db = FreshDatabase::create(&admin, "testkit")
            .await
            .expect("create");
        let mut conn = PgConnection::connect(&db.url).await.expect("connect");
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(one, 1);
        conn.close().await.unwrap();
        let name = db.name().to_owned();
        db.drop_now().await.expect("drop");
        let mut admin_conn = PgConnection::connect(&admin).await.unwrap();
        let left: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut admin_conn)
                .await
                .unwrap();
        assert!(!left, "{name} was dropped");
    }
}

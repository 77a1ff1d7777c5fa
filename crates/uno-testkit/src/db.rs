//! Fresh real databases for tests.
//!
//! Postgres tests use the server at `UNO_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), create a uniquely named
//! database per test and drop it afterwards. When that server cannot be
//! reached the test fails with a message saying how to start it: a suite that
//! quietly skipped its Postgres half would prove nothing about production.

use std::path::PathBuf;

use sqlx::Connection;
use sqlx::postgres::PgConnection;

/// Which database a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh Postgres database.
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// A database that exists for one test.
#[derive(Debug)]
pub struct TestDatabase {
    /// The URL to hand to `uno_store::Store::connect`.
    pub url: String,
    /// The backend.
    pub backend: Backend,
    pg_name: Option<String>,
    dir: Option<tempfile::TempDir>,
}

/// The Postgres server tests use.
pub fn postgres_admin_url() -> String {
    std::env::var("UNO_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn with_database(admin_url: &str, name: &str) -> String {
    match admin_url.rfind('/') {
        Some(slash) if slash > "postgres://".len() => format!("{}/{name}", &admin_url[..slash]),
        _ => format!("{admin_url}/{name}"),
    }
}

impl TestDatabase {
    /// A fresh database of the given kind.
    pub async fn new(backend: Backend) -> TestDatabase {
        match backend {
            Backend::Postgres => Self::postgres().await,
            Backend::Sqlite => Self::sqlite(),
        }
    }

    /// A fresh Postgres database.
    ///
    /// # Panics
    ///
    /// When the Postgres server cannot be reached: the test must fail, not
    /// pass without having run.
    pub async fn postgres() -> TestDatabase {
        let admin = postgres_admin_url();
        let name = format!("uno_test_{}", uuid::Uuid::now_v7().simple());
        let mut conn = match PgConnection::connect(&admin).await {
            Ok(conn) => conn,
            Err(err) => panic!(
                "cannot reach Postgres at {admin}: {err}. Start it (`pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set UNO_TEST_POSTGRES_URL"
            ),
        };
        if let Err(err) = sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
        {
            panic!("cannot create test database {name}: {err}");
        }
        let _ = conn.close().await;
        TestDatabase {
            url: with_database(&admin, &name),
            backend: Backend::Postgres,
            pg_name: Some(name),
            dir: None,
        }
    }

    /// A fresh SQLite file in a temporary directory.
    ///
    /// # Panics
    ///
    /// When no temporary directory can be made.
    pub fn sqlite() -> TestDatabase {
        let dir = match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("cannot create a temporary directory: {err}"),
        };
        let path = dir.path().join("uno.db");
        TestDatabase {
            url: format!("sqlite:{}", path.display()),
            backend: Backend::Sqlite,
            pg_name: None,
            dir: Some(dir),
        }
    }

    /// The Postgres database's name (`None` for SQLite).
    pub fn postgres_name(&self) -> Option<&str> {
        self.pg_name.as_deref()
    }

    /// A scratch directory that lives as long as the database (for
    /// journals and export files).
    pub fn scratch_dir(&self) -> PathBuf {
        match &self.dir {
            Some(dir) => dir.path().to_owned(),
            None => std::env::temp_dir().join(self.pg_name.clone().unwrap_or_default()),
        }
    }

    /// This database's URL with its host and port replaced, to route it
    /// through a [`crate::TcpRelay`].
    pub fn url_via(&self, addr: std::net::SocketAddr) -> String {
        let Some(at) = self.url.find('@') else {
            return self.url.clone();
        };
        let rest = &self.url[at + 1..];
        let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
        format!("{}@{addr}{path}", &self.url[..at])
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        let _ = std::fs::remove_dir_all(std::env::temp_dir().join(&name));
        let admin = postgres_admin_url();
        // Drop may run inside or outside a runtime; a thread with its own
        // runtime works in both.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_rewritten() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        let db = TestDatabase {
            url: "postgres://postgres@127.0.0.1:5432/x".into(),
            backend: Backend::Postgres,
            pg_name: None,
            dir: None,
        };
        assert_eq!(
            db.url_via("127.0.0.1:9".parse().unwrap()),
            "postgres://postgres@127.0.0.1:9/x"
        );
    }
}

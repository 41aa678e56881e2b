//! Tests of the SQLite backend against real database files in temporary directories.

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;

use tempfile::TempDir;

use super::*;
use crate::Store;

fn new_account(email: &str) -> NewAccount {
    NewAccount {
        email: email.to_owned(),
        display_name: format!("name of {email}"),
        password_hash: "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$aGFzaA".to_owned(),
        md5_secret: None,
    }
}

fn temp_db() -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("msgr.sqlite");
    (dir, path)
}

fn pragma_i64(conn: &Connection, name: &str) -> i64 {
    conn.pragma_query_value(None, name, |r| r.get(0)).unwrap()
}

#[test]
fn store_is_send_sync() {
    fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<SqliteStore>();
    assert_send_sync::<Store>();
    assert_send_sync::<Arc<dyn AccountStore>>();
}

#[test]
fn create_and_get() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    let mut new = new_account("Alice@Example.com");
    new.md5_secret = Some("secret".to_owned());
    let created = store.create_account(new).unwrap();
    assert_eq!(created.email, "alice@example.com");
    assert_eq!(created.md5_secret.as_deref(), Some("secret"));
    assert!(created.created_at > 1_600_000_000);

    let got = store.account("alice@example.com").unwrap().unwrap();
    assert_eq!(got, created);
    assert_eq!(store.account("nobody@example.com").unwrap(), None);
    assert_eq!(store.account_count().unwrap(), 1);
}

#[test]
fn lookups_ignore_case() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    let created = store
        .create_account(new_account("bob@example.com"))
        .unwrap();
    for email in ["bob@example.com", "BOB@EXAMPLE.COM", "Bob@Example.Com"] {
        assert_eq!(
            store.account(email).unwrap().as_ref(),
            Some(&created),
            "{email}"
        );
    }
    store.set_display_name("BOB@example.com", "Bobby").unwrap();
    assert_eq!(
        store
            .account("bob@example.com")
            .unwrap()
            .unwrap()
            .display_name,
        "Bobby"
    );
}

#[test]
fn duplicate_is_account_exists() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    store
        .create_account(new_account("carol@example.com"))
        .unwrap();
    for dup in ["carol@example.com", "CAROL@example.com"] {
        match store.create_account(new_account(dup)) {
            Err(StoreError::AccountExists(e)) => assert_eq!(e, "carol@example.com"),
            other => panic!("{dup}: expected AccountExists, got {other:?}"),
        }
    }
    assert_eq!(store.account_count().unwrap(), 1);
}

#[test]
fn accounts_are_ordered_by_email() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    for email in [
        "zed@example.com",
        "Amy@example.com",
        "mike@example.com",
        "bea@example.com",
    ] {
        store.create_account(new_account(email)).unwrap();
    }
    let emails: Vec<String> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.email)
        .collect();
    assert_eq!(
        emails,
        [
            "amy@example.com",
            "bea@example.com",
            "mike@example.com",
            "zed@example.com"
        ]
    );
    assert_eq!(store.account_count().unwrap(), 4);
}

#[test]
fn set_password_replaces_hash_and_secret() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    let mut new = new_account("dan@example.com");
    new.md5_secret = Some("old".to_owned());
    store.create_account(new).unwrap();

    store
        .set_password("DAN@example.com", "new-hash", None)
        .unwrap();
    let got = store.account("dan@example.com").unwrap().unwrap();
    assert_eq!(got.password_hash, "new-hash");
    assert_eq!(got.md5_secret, None);

    store
        .set_password("dan@example.com", "newer-hash", Some("md5"))
        .unwrap();
    let got = store.account("dan@example.com").unwrap().unwrap();
    assert_eq!(got.password_hash, "newer-hash");
    assert_eq!(got.md5_secret.as_deref(), Some("md5"));
}

#[test]
fn missing_account_is_not_found() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    let results = [
        store.set_password("ghost@example.com", "h", None),
        store.set_display_name("ghost@example.com", "Ghost"),
        store.delete_account("ghost@example.com"),
    ];
    for r in results {
        assert!(
            matches!(&r, Err(StoreError::AccountNotFound(e)) if e == "ghost@example.com"),
            "{r:?}"
        );
    }
}

#[test]
fn delete_removes_the_account() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    store
        .create_account(new_account("eve@example.com"))
        .unwrap();
    store
        .create_account(new_account("fay@example.com"))
        .unwrap();
    store.delete_account("EVE@example.com").unwrap();
    assert_eq!(store.account("eve@example.com").unwrap(), None);
    assert_eq!(store.account_count().unwrap(), 1);
    assert!(matches!(
        store.delete_account("eve@example.com"),
        Err(StoreError::AccountNotFound(_))
    ));
    // The name is free again.
    store
        .create_account(new_account("eve@example.com"))
        .unwrap();
}

#[test]
fn open_creates_missing_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("msgr.sqlite");
    let store = SqliteStore::open(&path).unwrap();
    store
        .create_account(new_account("gus@example.com"))
        .unwrap();
    assert!(path.is_file());
    assert_eq!(store.path(), path);
}

#[test]
fn connections_have_the_promised_settings() {
    let (_dir, path) = temp_db();
    let store = SqliteStore::open(&path).unwrap();
    {
        let w = store.writer.lock().unwrap();
        assert_eq!(pragma_i64(&w, "synchronous"), 2, "FULL");
        assert_eq!(pragma_i64(&w, "foreign_keys"), 1);
        assert_eq!(pragma_i64(&w, "busy_timeout"), 5000);
        let mode: String = w
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
    store
        .with_reader(|r| {
            assert_eq!(pragma_i64(r, "synchronous"), 2);
            assert_eq!(pragma_i64(r, "foreign_keys"), 1);
            assert_eq!(pragma_i64(r, "query_only"), 1);
            assert!(r.execute("DELETE FROM accounts", []).is_err());
            Ok(())
        })
        .unwrap();

    let relaxed = SqliteOptions {
        synchronous_full: false,
        ..SqliteOptions::default()
    };
    let (_dir2, path2) = temp_db();
    let store = SqliteStore::open_with(&path2, relaxed).unwrap();
    assert_eq!(
        pragma_i64(&store.writer.lock().unwrap(), "synchronous"),
        1,
        "NORMAL"
    );
}

#[test]
fn reopening_is_idempotent() {
    let (_dir, path) = temp_db();
    let first = SqliteStore::open(&path).unwrap();
    first
        .create_account(new_account("hal@example.com"))
        .unwrap();
    // A second handle on a live database, as when the CLI runs next to the server.
    let second = SqliteStore::open(&path).unwrap();
    assert!(second.account("hal@example.com").unwrap().is_some());
    drop(first);
    drop(second);
    let third = SqliteStore::open(&path).unwrap();
    assert_eq!(third.account_count().unwrap(), 1);
    let version = user_version(&third.writer.lock().unwrap()).unwrap();
    assert_eq!(version, i64::from(migrations::SQLITE.len() as u32));
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path) = temp_db();
    drop(SqliteStore::open(&path).unwrap());
    {
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
    }
    match SqliteStore::open(&path) {
        Err(StoreError::UnsupportedSchema {
            found: 999,
            supported,
        }) => {
            assert_eq!(supported, migrations::SQLITE.len() as u32);
        }
        other => panic!("expected UnsupportedSchema, got {other:?}"),
    }
    let err = SqliteStore::open(&path).unwrap_err().to_string();
    assert!(err.contains("999") && err.contains("newer msgr"), "{err}");
}

#[test]
fn failed_migration_rolls_back_every_step() {
    let (_dir, path) = temp_db();
    let steps = [
        Migration {
            version: 1,
            sql: "CREATE TABLE one (x INTEGER);",
        },
        Migration {
            version: 2,
            sql: "CREATE TABLE two (y INTEGER); THIS IS NOT SQL;",
        },
    ];
    match SqliteStore::open_migrated(&path, SqliteOptions::default(), &steps) {
        Err(StoreError::Migration { version: 2, .. }) => {}
        other => panic!("expected Migration {{ version: 2 }}, got {other:?}"),
    }
    let conn = Connection::open(&path).unwrap();
    assert_eq!(user_version(&conn).unwrap(), 0);
    let tables: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0);
    drop(conn);

    // Once the broken step is fixed, both apply.
    let fixed = [
        steps[0],
        Migration {
            version: 2,
            sql: "CREATE TABLE two (y INTEGER);",
        },
    ];
    let store = SqliteStore::open_migrated(&path, SqliteOptions::default(), &fixed).unwrap();
    assert_eq!(user_version(&store.writer.lock().unwrap()).unwrap(), 2);
}

#[test]
fn later_migrations_apply_on_top_of_earlier_ones() {
    let (_dir, path) = temp_db();
    let v1 = &migrations::SQLITE[..1];
    let store = SqliteStore::open_migrated(&path, SqliteOptions::default(), v1).unwrap();
    store
        .create_account(new_account("ivy@example.com"))
        .unwrap();
    drop(store);

    let mut v2 = v1.to_vec();
    v2.push(Migration {
        version: 2,
        sql: "ALTER TABLE accounts ADD COLUMN note TEXT NULL;",
    });
    let store = SqliteStore::open_migrated(&path, SqliteOptions::default(), &v2).unwrap();
    assert!(store.account("ivy@example.com").unwrap().is_some());
    assert_eq!(user_version(&store.writer.lock().unwrap()).unwrap(), 2);
}

#[test]
fn concurrent_readers_and_a_writer() {
    let (_dir, path) = temp_db();
    let store = Arc::new(Store::open_sqlite(&path).unwrap());
    for i in 0..20 {
        store
            .create_account(new_account(&format!("user{i}@example.com")))
            .unwrap();
    }
    let mut handles = Vec::new();
    for t in 0..8 {
        let store = Arc::clone(&store);
        handles.push(thread::spawn(move || {
            for n in 0..200 {
                let email = format!("USER{}@example.com", (t + n) % 20);
                assert!(store.account(&email).unwrap().is_some(), "{email}");
            }
        }));
    }
    let writer = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for i in 20..60 {
                store
                    .create_account(new_account(&format!("user{i}@example.com")))
                    .unwrap();
            }
        })
    };
    for h in handles {
        h.join().unwrap();
    }
    writer.join().unwrap();
    assert_eq!(store.account_count().unwrap(), 60);
    let Store::Sqlite(sqlite) = &*store;
    let idle = sqlite.readers.lock().unwrap().len();
    assert!(
        (1..=SqliteOptions::default().readers).contains(&idle),
        "{idle} idle readers"
    );
}

#[test]
fn zero_readers_still_reads() {
    let (_dir, path) = temp_db();
    let options = SqliteOptions {
        readers: 0,
        ..SqliteOptions::default()
    };
    let store = SqliteStore::open_with(&path, options).unwrap();
    store.create_account(new_account("jo@example.com")).unwrap();
    assert!(store.account("jo@example.com").unwrap().is_some());
    assert!(store.readers.lock().unwrap().is_empty());
}

#[test]
fn writes_from_another_handle_are_seen() {
    // Two stores on one file behave like the server and the CLI in separate processes.
    let (_dir, path) = temp_db();
    let server = SqliteStore::open(&path).unwrap();
    let cli = SqliteStore::open(&path).unwrap();
    assert_eq!(server.account("kim@example.com").unwrap(), None);
    cli.create_account(new_account("kim@example.com")).unwrap();
    assert!(server.account("kim@example.com").unwrap().is_some());
    assert!(matches!(
        server.create_account(new_account("KIM@example.com")),
        Err(StoreError::AccountExists(_))
    ));
    cli.delete_account("kim@example.com").unwrap();
    assert_eq!(server.account("kim@example.com").unwrap(), None);
}

#[test]
fn survives_drop_without_close() {
    let (_dir, path) = temp_db();
    let store = Store::open_sqlite(&path).unwrap();
    let created = store
        .create_account(new_account("lee@example.com"))
        .unwrap();
    drop(store);
    let store = Store::open_sqlite(&path).unwrap();
    assert_eq!(store.account("lee@example.com").unwrap(), Some(created));
}

/// Set in the child process of [`survives_kill_9`] to the database path it must write to.
const KILL_CHILD_ENV: &str = "MSGR_STORE_TEST_KILL_CHILD_DB";
/// Printed by the child once `create_account` has returned, i.e. once the write is acknowledged.
const KILL_CHILD_MARKER: &str = "msgr-store-account-written";

#[test]
fn survives_kill_9() {
    if let Some(path) = std::env::var_os(KILL_CHILD_ENV) {
        // Child: write, acknowledge, then wait to be killed without any chance to clean up.
        let store = Store::open_sqlite(Path::new(&path)).unwrap();
        store
            .create_account(new_account("max@example.com"))
            .unwrap();
        println!("{KILL_CHILD_MARKER}");
        loop {
            thread::park();
        }
    }

    let (_dir, path) = temp_db();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sqlite::tests::survives_kill_9",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(KILL_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let acknowledged = BufReader::new(stdout)
        .lines()
        .map_while(std::result::Result::ok)
        .any(|line| line.contains(KILL_CHILD_MARKER));
    // SIGKILL on Unix: no destructors, no close, no checkpoint.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(acknowledged, "child exited without writing");

    let store = Store::open_sqlite(&path).unwrap();
    let got = store.account("max@example.com").unwrap();
    assert_eq!(got.map(|a| a.email).as_deref(), Some("max@example.com"));
}

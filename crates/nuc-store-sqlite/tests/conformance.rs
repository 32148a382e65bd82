//! The same promises, kept by both implementations of the storage traits: SQLite (what runs)
//! and memory (what the roles' unit tests run against). Each scenario (in `scenarios/`, shared
//! with the PostgreSQL store's test) is written once, over the traits, and run on both, so the
//! fake cannot drift from the real store unnoticed.

mod scenarios;

use nuc_store::memory::MemoryStore;
use nuc_store_sqlite::SqliteStore;
use scenarios::Store;

/// Runs `scenario` on a fresh SQLite store and on a fresh memory store.
fn on_both(scenario: fn(&dyn Store)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteStore::open(&dir.path().join("nuc.db")).unwrap();
    scenario(&sqlite);
    scenario(&MemoryStore::new());
}

/// One test per scenario.
macro_rules! on_both_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                on_both(scenarios::$name)
            }
        )*
    };
}

scenarios::for_each_scenario!(on_both_tests);

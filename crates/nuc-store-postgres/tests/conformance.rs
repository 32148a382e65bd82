//! The conformance scenarios of the storage traits (shared with the SQLite and memory stores'
//! test, in `nuc-store-sqlite/tests/scenarios`), run on PostgreSQL: one cluster, each scenario
//! on a database of its own.

#[path = "../../nuc-store-sqlite/tests/scenarios/mod.rs"]
mod scenarios;

mod common;

use scenarios::Store;

/// Every scenario, by name.
macro_rules! all {
    ($($name:ident),* $(,)?) => {
        const ALL: &[(&str, fn(&dyn Store))] = &[$((stringify!($name), scenarios::$name)),*];
    };
}
scenarios::for_each_scenario!(all);

#[test]
fn every_scenario_holds_on_postgresql() {
    let cluster = common::cluster();
    for (i, (name, scenario)) in ALL.iter().enumerate() {
        let store = common::fresh(&cluster, &format!("scenario_{i}"));
        eprintln!("scenario {name}");
        scenario(&store);
        assert!(
            matches!(nuc_store::AuditLog::verify_audit(&store), Ok(Ok(_))),
            "{name}: the audit chain does not verify"
        );
    }
}

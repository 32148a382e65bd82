//! Fixture data: what the registry service serves in dev and tests, and what
//! [`FixtureRegistry`] answers from memory.
//!
//! The built-in fixture is a copy of the project's shared registry fixture, kept in
//! `fixtures/registry.json` inside this crate. Every file is checked whole on load: IIN/BIN
//! check digits, no number twice, every employee a known individual, listed once per entity.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use nuc_core::{Bin, Iin};
use serde::Deserialize;

use crate::{BoxFuture, LegalEntity, Person, Registry, RegistryError};

const BUILTIN: &str = include_str!("../fixtures/registry.json");

/// Why a fixture file was refused.
#[derive(Debug, thiserror::Error)]
pub enum FixtureError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// Not JSON of the fixture's shape, or a field refused (a bad IIN/BIN check digit, an
    /// unknown role); the message names the field, line and column.
    #[error("fixture: {0}")]
    Json(#[from] serde_json::Error),
    /// The same IIN or BIN appears twice.
    #[error("fixture: {what} {id} appears twice")]
    Duplicate { what: &'static str, id: String },
    /// A legal entity lists an IIN that is not among the individuals.
    #[error("fixture: legal entity {bin} lists {iin}, who is not among the individuals")]
    UnknownEmployee { bin: String, iin: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FixtureFile {
    #[serde(default)]
    #[allow(dead_code)]
    about: Option<String>,
    individuals: Vec<Person>,
    legal_entities: Vec<LegalEntity>,
}

/// The registry's data, checked and indexed by IIN and BIN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    individuals: BTreeMap<Iin, Person>,
    legal_entities: BTreeMap<Bin, LegalEntity>,
}

impl Fixture {
    /// Parses and checks a fixture (the shape of `fixtures/registry.json`).
    pub fn from_json(json: &str) -> Result<Fixture, FixtureError> {
        let file: FixtureFile = serde_json::from_str(json)?;
        let mut individuals = BTreeMap::new();
        for p in file.individuals {
            if individuals.contains_key(&p.iin) {
                return Err(FixtureError::Duplicate {
                    what: "individual",
                    id: p.iin.to_string(),
                });
            }
            individuals.insert(p.iin.clone(), p);
        }
        let mut legal_entities = BTreeMap::new();
        for e in file.legal_entities {
            if legal_entities.contains_key(&e.bin) {
                return Err(FixtureError::Duplicate {
                    what: "legal entity",
                    id: e.bin.to_string(),
                });
            }
            let mut seen = BTreeSet::new();
            for emp in &e.employees {
                if !individuals.contains_key(&emp.iin) {
                    return Err(FixtureError::UnknownEmployee {
                        bin: e.bin.to_string(),
                        iin: emp.iin.to_string(),
                    });
                }
                if !seen.insert(&emp.iin) {
                    return Err(FixtureError::Duplicate {
                        what: "employee",
                        id: format!("{} of {}", emp.iin, e.bin),
                    });
                }
            }
            legal_entities.insert(e.bin.clone(), e);
        }
        Ok(Fixture {
            individuals,
            legal_entities,
        })
    }

    /// Reads and checks a fixture file.
    pub fn load(path: &Path) -> Result<Fixture, FixtureError> {
        let json = std::fs::read_to_string(path).map_err(|source| FixtureError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Fixture::from_json(&json)
    }

    /// The fixture built into the crate (`fixtures/registry.json`).
    pub fn builtin() -> Fixture {
        Fixture::from_json(BUILTIN).expect("the built-in fixture is checked by the unit tests")
    }

    pub fn person(&self, iin: &Iin) -> Option<&Person> {
        self.individuals.get(iin)
    }

    pub fn legal_entity(&self, bin: &Bin) -> Option<&LegalEntity> {
        self.legal_entities.get(bin)
    }

    /// All individuals, in IIN order.
    pub fn individuals(&self) -> impl Iterator<Item = &Person> {
        self.individuals.values()
    }

    /// All legal entities, in BIN order.
    pub fn legal_entities(&self) -> impl Iterator<Item = &LegalEntity> {
        self.legal_entities.values()
    }
}

/// A [`Registry`] answering from a [`Fixture`] in memory, for the unit tests of other crates.
/// [`FixtureRegistry::unavailable`] gives one that is down, to test the UNAVAILABLE path.
#[derive(Debug, Clone)]
pub struct FixtureRegistry {
    data: Arc<Fixture>,
    down: Option<String>,
}

impl FixtureRegistry {
    pub fn new(data: Fixture) -> FixtureRegistry {
        FixtureRegistry {
            data: Arc::new(data),
            down: None,
        }
    }

    /// Over [`Fixture::builtin`].
    pub fn builtin() -> FixtureRegistry {
        FixtureRegistry::new(Fixture::builtin())
    }

    /// A registry that answers every look-up with [`RegistryError::Unavailable`]`(reason)`.
    pub fn unavailable(reason: &str) -> FixtureRegistry {
        FixtureRegistry {
            data: Arc::new(Fixture {
                individuals: BTreeMap::new(),
                legal_entities: BTreeMap::new(),
            }),
            down: Some(reason.to_owned()),
        }
    }

    pub fn fixture(&self) -> &Fixture {
        &self.data
    }

    fn lookup<T: Clone>(
        &self,
        found: Option<&T>,
        what: &'static str,
        id: &str,
    ) -> Result<T, RegistryError> {
        if let Some(reason) = &self.down {
            return Err(RegistryError::Unavailable(reason.clone()));
        }
        found.cloned().ok_or_else(|| RegistryError::NotFound {
            what,
            id: id.to_owned(),
        })
    }
}

impl Registry for FixtureRegistry {
    fn person(&self, iin: &Iin) -> BoxFuture<'_, Result<Person, RegistryError>> {
        let result = self.lookup(self.data.person(iin), "individual", iin.as_str());
        Box::pin(async move { result })
    }

    fn legal_entity(&self, bin: &Bin) -> BoxFuture<'_, Result<LegalEntity, RegistryError>> {
        let result = self.lookup(self.data.legal_entity(bin), "legal entity", bin.as_str());
        Box::pin(async move { result })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn the_builtin_fixture_loads_whole() {
        let f = Fixture::builtin();
        assert_eq!(f.individuals().count(), 25);
        assert_eq!(f.legal_entities().count(), 5);
        let abai = f.person(&Iin::parse("860908363012").unwrap()).unwrap();
        assert_eq!(abai.surname.as_bytes(), "ҚҰНАНБАЙ".as_bytes());
        assert_eq!(abai.patronymic.as_deref(), Some("ҚҰНАНБАЙҰЛЫ"));
        let dala = f
            .legal_entity(&Bin::parse("120340240006").unwrap())
            .unwrap();
        assert_eq!(dala.registered.as_deref(), Some("2012-03-01"));
        let roles: Vec<Role> = dala.employees.iter().map(|e| e.role).collect();
        assert_eq!(roles, Role::ALL);
    }

    #[test]
    fn loading_drops_no_field_of_any_record() {
        // Re-serialising what we loaded keeps every record: nothing is dropped on the way.
        let raw: serde_json::Value = serde_json::from_str(BUILTIN).unwrap();
        let f = Fixture::builtin();
        let people: Vec<serde_json::Value> = f
            .individuals()
            .map(|p| serde_json::to_value(p).unwrap())
            .collect();
        for p in raw["individuals"].as_array().unwrap() {
            assert!(people.contains(p), "{}", p["iin"]);
        }
        let entities: Vec<serde_json::Value> = f
            .legal_entities()
            .map(|e| serde_json::to_value(e).unwrap())
            .collect();
        for e in raw["legal_entities"].as_array().unwrap() {
            assert!(entities.contains(e), "{}", e["bin"]);
        }
    }

    #[test]
    fn a_bad_iin_check_digit_is_refused() {
        // Only the individual's record changes: the check digit must refuse it by itself.
        let bad = BUILTIN.replacen("\"iin\": \"860908363012\"", "\"iin\": \"860908363013\"", 1);
        assert_ne!(bad, BUILTIN);
        let err = Fixture::from_json(&bad).unwrap_err();
        assert!(matches!(err, FixtureError::Json(_)), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("iin: check digit is 3, expected 2"), "{msg}");
    }

    #[test]
    fn a_bad_bin_check_digit_is_refused() {
        let bad = BUILTIN.replace("120340240006", "120340240005");
        let msg = Fixture::from_json(&bad).unwrap_err().to_string();
        assert!(msg.contains("bin: check digit is 5, expected 6"), "{msg}");
    }

    #[test]
    fn an_employee_with_a_bad_check_digit_is_refused() {
        // The employee listing is checked too, not only the individuals.
        // The last occurrence of this IIN is in the employee list of an entity.
        let at = BUILTIN.rfind("750522309865").unwrap();
        assert!(BUILTIN[..at].contains("\"legal_entities\""));
        let bad = format!("{}750522309866{}", &BUILTIN[..at], &BUILTIN[at + 12..]);
        let msg = Fixture::from_json(&bad).unwrap_err().to_string();
        assert!(msg.contains("iin: check digit is 6, expected 5"), "{msg}");
    }

    #[test]
    fn malformed_numbers_are_refused() {
        for (from, to) in [
            ("860908363012", "86090836301"),
            ("860908363012", "8609083630l2"),
        ] {
            let bad = BUILTIN.replacen(from, to, 1);
            let msg = Fixture::from_json(&bad).unwrap_err().to_string();
            assert!(msg.contains("iin: must"), "{msg}");
        }
    }

    #[test]
    fn duplicates_unknown_employees_and_unknown_roles_are_refused() {
        let minimal = |individuals: &str, entities: &str| {
            format!(r#"{{"individuals":[{individuals}],"legal_entities":[{entities}]}}"#)
        };
        let abai = r#"{"iin":"860908363012","surname":"A","name":"B","birth_date":"1986-09-08"}"#;
        let kanysh = r#"{"iin":"921002310220","surname":"C","name":"D","birth_date":"1992-10-02"}"#;
        assert!(Fixture::from_json(&minimal(abai, "")).is_ok());

        let err = Fixture::from_json(&minimal(&format!("{abai},{abai}"), "")).unwrap_err();
        assert!(
            matches!(
                err,
                FixtureError::Duplicate {
                    what: "individual",
                    ..
                }
            ),
            "{err:?}"
        );

        let ent =
            |emps: &str| format!(r#"{{"bin":"120340240006","name":"E","employees":[{emps}]}}"#);
        let head = r#"{"iin":"860908363012","role":"first-head"}"#;
        let err = Fixture::from_json(&minimal(abai, &format!("{},{}", ent(head), ent(head))))
            .unwrap_err();
        assert!(
            matches!(
                err,
                FixtureError::Duplicate {
                    what: "legal entity",
                    ..
                }
            ),
            "{err:?}"
        );

        let err = Fixture::from_json(&minimal(abai, &ent(&format!("{head},{head}")))).unwrap_err();
        assert!(
            matches!(
                err,
                FixtureError::Duplicate {
                    what: "employee",
                    ..
                }
            ),
            "{err:?}"
        );

        let stranger = r#"{"iin":"921002310220","role":"signer"}"#;
        let err = Fixture::from_json(&minimal(abai, &ent(stranger))).unwrap_err();
        assert!(
            matches!(err, FixtureError::UnknownEmployee { .. }),
            "{err:?}"
        );
        assert!(Fixture::from_json(&minimal(&format!("{abai},{kanysh}"), &ent(stranger))).is_ok());

        let boss = r#"{"iin":"860908363012","role":"boss"}"#;
        let msg = Fixture::from_json(&minimal(abai, &ent(boss)))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("unknown variant `boss`"), "{msg}");

        let typo = r#"{"individuals":[],"legal_entites":[]}"#;
        assert!(Fixture::from_json(typo).is_err());
    }

    #[tokio::test]
    async fn the_fixture_registry_answers_and_refuses() {
        let reg = FixtureRegistry::builtin();
        let p = reg
            .person(&Iin::parse("050725584996").unwrap())
            .await
            .unwrap();
        assert_eq!(p.surname, "ИВАНОВ");
        let unknown = Iin::parse("860908363022").unwrap();
        assert_eq!(
            reg.person(&unknown).await.unwrap_err(),
            RegistryError::NotFound {
                what: "individual",
                id: unknown.to_string()
            }
        );
        let down = FixtureRegistry::unavailable("SHEP maintenance");
        assert_eq!(
            down.person(&Iin::parse("050725584996").unwrap())
                .await
                .unwrap_err(),
            RegistryError::Unavailable("SHEP maintenance".into())
        );
    }
}

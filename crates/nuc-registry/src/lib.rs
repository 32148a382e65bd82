//! The state registry of individuals and legal entities (ГБД ФЛ / ГБД ЮЛ, reached through the
//! SHEP gateway), as the registration authority sees it.
//!
//! This crate owns three things: the registry's interface ([`Registry`], the records
//! [`Person`] and [`LegalEntity`], the refusals of [`RegistryError`]); its HTTP client
//! ([`HttpRegistry`], over https with a configured CA bundle: [`ClientTls`]); and a small HTTP
//! registry service ([`router`], the `nuc-registry` binary, over TLS with [`TlsListener`]) that
//! serves fixture data ([`Fixture`], built in from `fixtures/registry.json`, other files
//! by flag). Swapping the fixture service for the real registry is a matter of configuration:
//! the service names the base URL, nothing else changes. [`FixtureRegistry`] answers from
//! memory for the unit tests of other crates.
//!
//! It must never store anything (a look-up leaves no trace but a log line), never invent a
//! person (an unknown IIN/BIN is [`RegistryError::NotFound`], an unreachable registry is
//! [`RegistryError::Unavailable`], never a default record), and never log more than the IIN or
//! BIN looked up: names, dates of birth and e-mail addresses stay out of logs and out of error
//! messages.

mod client;
mod fixture;
mod model;
mod server;
mod tls;

use std::future::Future;
use std::pin::Pin;

use nuc_core::{Bin, Iin, ReasonCode};

pub use client::HttpRegistry;
pub use fixture::{Fixture, FixtureError, FixtureRegistry};
pub use model::{Employee, LegalEntity, Person, Role, UnknownRole};
pub use server::router;
pub use tls::{ClientTls, HANDSHAKE_TIMEOUT, TlsListener, server_config};

/// A boxed, sendable future: what the methods of [`Registry`] return, so that the trait can be
/// used as `dyn Registry`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why the registry gave no record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    /// The registry answered that it does not know this IIN/BIN (or, for `"employee"`, that
    /// the person is not listed by the entity).
    #[error("{what} {id} is not in the registry")]
    NotFound {
        /// `"individual"`, `"legal entity"` or `"employee"`.
        what: &'static str,
        /// The IIN, the BIN, or `"IIN of BIN"` for an employee.
        id: String,
    },
    /// The registry could not be asked: unreachable, timed out, or failed (5xx). The caller
    /// maps it to gRPC UNAVAILABLE and stores nothing.
    #[error("registry unavailable: {0}")]
    Unavailable(String),
    /// The registry answered something we cannot read (or a record for another number).
    #[error("registry answer unreadable: {0}")]
    Invalid(String),
    /// How the registry is to be reached is refused before anything is asked: a URL that is
    /// not http(s), plain http beyond loopback, https without a CA bundle, an unreadable
    /// certificate or key file. `setting` names it (`url`, `ca_cert`, `client_cert`, …).
    #[error("{setting}: {reason}")]
    Setting { setting: String, reason: String },
}

impl RegistryError {
    /// The reason code the refusal carries to the API.
    pub fn reason(&self) -> ReasonCode {
        match self {
            RegistryError::NotFound { .. } => ReasonCode::ApplicantNotInRegistry,
            RegistryError::Unavailable(_) | RegistryError::Invalid(_) => ReasonCode::Unavailable,
            RegistryError::Setting { .. } => ReasonCode::InvalidArgument,
        }
    }
}

/// The registry as the registration authority uses it. Object-safe: hold it as
/// `Arc<dyn Registry>` and choose the implementation by configuration.
pub trait Registry: Send + Sync {
    /// The individual with this IIN (ГБД ФЛ).
    fn person(&self, iin: &Iin) -> BoxFuture<'_, Result<Person, RegistryError>>;
    /// The legal entity with this BIN, with its employees and their roles (ГБД ЮЛ).
    fn legal_entity(&self, bin: &Bin) -> BoxFuture<'_, Result<LegalEntity, RegistryError>>;
}

/// The legal entity `bin` and the role it gives `iin`; [`RegistryError::NotFound`] with `what`
/// `"employee"` when the entity exists but does not list that person.
///
/// This does not look the person up in ГБД ФЛ: call [`Registry::person`] for that.
pub async fn employee_role(
    reg: &dyn Registry,
    bin: &Bin,
    iin: &Iin,
) -> Result<(LegalEntity, Role), RegistryError> {
    let entity = reg.legal_entity(bin).await?;
    match entity.role_of(iin) {
        Some(role) => Ok((entity, role)),
        None => Err(RegistryError::NotFound {
            what: "employee",
            id: format!("{iin} of {bin}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_map_as_the_api_expects() {
        let nf = RegistryError::NotFound {
            what: "individual",
            id: "860908363012".into(),
        };
        assert_eq!(nf.reason(), ReasonCode::ApplicantNotInRegistry);
        assert_eq!(
            nf.to_string(),
            "individual 860908363012 is not in the registry"
        );
        assert_eq!(
            RegistryError::Unavailable("x".into()).reason(),
            ReasonCode::Unavailable
        );
        assert_eq!(
            RegistryError::Invalid("x".into()).reason(),
            ReasonCode::Unavailable
        );
    }

    #[tokio::test]
    async fn employee_role_through_the_trait_object() {
        let reg = FixtureRegistry::builtin();
        let reg: &dyn Registry = &reg;
        let bin = Bin::parse("120340240006").unwrap();
        let (entity, role) = employee_role(reg, &bin, &Iin::parse("921002310220").unwrap())
            .await
            .unwrap();
        assert_eq!(entity.bin, bin);
        assert_eq!(role, Role::Signer);
        // A real person, but employed elsewhere.
        let err = employee_role(reg, &bin, &Iin::parse("750909384771").unwrap())
            .await
            .unwrap_err();
        assert_eq!(
            err,
            RegistryError::NotFound {
                what: "employee",
                id: "750909384771 of 120340240006".into()
            }
        );
        // An unknown entity is reported as such, not as an unknown employee.
        let unknown_bin = Bin::parse("120340240016").unwrap();
        let err = employee_role(reg, &unknown_bin, &Iin::parse("921002310220").unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                RegistryError::NotFound {
                    what: "legal entity",
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

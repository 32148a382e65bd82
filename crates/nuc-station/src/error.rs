//! Failures of a station step, each naming the step, so the operator knows what happened and
//! what to do next.

use std::path::PathBuf;

use nuc_card::CardError;

use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum StationError {
    /// The card refused or failed during `step`.
    #[error("{step}: {source}")]
    Card {
        step: &'static str,
        source: CardError,
    },
    /// The NUC refused `step`, with its reason code.
    #[error("{step}: {reason}: {message}")]
    Refused {
        step: &'static str,
        reason: String,
        message: String,
    },
    /// The NUC could not be reached or failed (nothing to blame on the input).
    #[error("{step}: the NUC did not answer: {message}")]
    Unreachable { step: &'static str, message: String },
    /// The applicant's USB token (PKCS#11) refused or failed during `step`.
    #[error("{step}: {source}")]
    CitizenToken {
        step: &'static str,
        source: Box<TokenError>,
    },
    /// Writing onto the applicant's USB token failed after the certificates were issued: they
    /// are on record at the NUC and can be written again onto the same token.
    #[error(
        "{step}: {source}; the certificates of request {request} are issued — with the same token plugged in, run `nuc-station write --request {request} --token-module {}`",
        .module.display()
    )]
    TokenWriteInterrupted {
        step: &'static str,
        request: String,
        module: PathBuf,
        source: Box<TokenError>,
    },
    /// The operator's token (PKCS#11) failed.
    #[error("operator token: {0}")]
    Token(String),
    /// Bad configuration or arguments (files, addresses, PIN format).
    #[error("{0}")]
    Config(String),
    /// A check of ours failed after the NUC answered (e.g. the certificates it returned).
    #[error("{step}: {detail}")]
    Check { step: &'static str, detail: String },
    /// The card left after the certificates were issued: they are on record at the NUC and can
    /// be written again onto the same card.
    #[error(
        "{step}: {source}; the certificates of request {request} are issued — insert the same card and run `nuc-station write --request {request}`"
    )]
    WriteInterrupted {
        step: &'static str,
        request: String,
        source: CardError,
    },
}

impl StationError {
    pub fn card(step: &'static str) -> impl FnOnce(CardError) -> StationError {
        move |source| StationError::Card { step, source }
    }

    /// The process exit code: 2 when the input or a rule refused (wrong PIN, refusal by the
    /// NUC), 3 when the step is to be repeated with the card back in the reader, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StationError::WriteInterrupted { .. } | StationError::TokenWriteInterrupted { .. } => 3,
            StationError::CitizenToken { source, .. } if source.is_refusal() => 2,
            StationError::Card { source, .. } if source.is_removal() => 3,
            StationError::Card {
                source:
                    CardError::WrongPin { .. }
                    | CardError::PinBlocked { .. }
                    | CardError::BadPinFormat
                    | CardError::UnknownCard { .. },
                ..
            }
            | StationError::Refused { .. }
            | StationError::Config(_) => 2,
            _ => 1,
        }
    }

    /// From a gRPC status: a refusal with its `nuc-reason`, or the NUC unreachable.
    pub fn from_status(step: &'static str, s: tonic::Status) -> StationError {
        match s
            .metadata()
            .get(nuc_api::REASON_METADATA)
            .and_then(|v| v.to_str().ok())
        {
            Some(reason) => StationError::Refused {
                step,
                reason: reason.to_owned(),
                message: s
                    .message()
                    .strip_prefix(&format!("{reason}: "))
                    .unwrap_or(s.message())
                    .to_owned(),
            },
            None => StationError::Unreachable {
                step,
                message: format!("{:?}: {}", s.code(), s.message()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nuc_card::StatusWord;

    #[test]
    fn a_refusal_keeps_its_reason_code_and_message() {
        let mut s =
            tonic::Status::failed_precondition("OPERATOR_SUSPENDED: operator 1 is suspended");
        s.metadata_mut().insert(
            nuc_api::REASON_METADATA,
            "OPERATOR_SUSPENDED".parse().unwrap(),
        );
        let e = StationError::from_status("confirmation", s);
        assert_eq!(
            e.to_string(),
            "confirmation: OPERATOR_SUSPENDED: operator 1 is suspended"
        );
        assert_eq!(e.exit_code(), 2);
        // Without a reason code it is the NUC (or the way to it) that failed.
        let e = StationError::from_status("registration", tonic::Status::unavailable("down"));
        assert!(matches!(e, StationError::Unreachable { .. }), "{e}");
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn exit_codes_say_what_to_do() {
        let wrong = StationError::Card {
            step: "PIN verification",
            source: CardError::WrongPin {
                sw: StatusWord(0x63C2),
                tries_left: 2,
            },
        };
        assert_eq!(wrong.exit_code(), 2);
        let removed = StationError::Card {
            step: "key generation on the card",
            source: CardError::Removed { op: "generate" },
        };
        assert_eq!(removed.exit_code(), 3);
        let cut = StationError::WriteInterrupted {
            step: "writing the certificates",
            request: "NUC-AAAA-BBBB-C".into(),
            source: CardError::Removed { op: "write" },
        };
        assert_eq!(cut.exit_code(), 3);
        assert!(
            cut.to_string()
                .contains("nuc-station write --request NUC-AAAA-BBBB-C"),
            "{cut}"
        );
    }

    #[test]
    fn a_token_refusal_is_2_and_a_cut_write_names_the_command_that_finishes_it() {
        let wrong = StationError::CitizenToken {
            step: "PIN verification",
            source: Box::new(TokenError::WrongPin {
                label: "citizen-usb".into(),
                hint: "",
            }),
        };
        assert_eq!(wrong.exit_code(), 2);
        let failed = StationError::CitizenToken {
            step: "key generation on the token",
            source: Box::new(TokenError::BadSignature(3)),
        };
        assert_eq!(failed.exit_code(), 1);
        let cut = StationError::TokenWriteInterrupted {
            step: "writing the certificates",
            request: "NUC-AAAA-BBBB-C".into(),
            module: PathBuf::from("/usr/lib/libkaztoken.so"),
            source: Box::new(TokenError::Certificate {
                slot: nuc_card::KeySlot::Auth,
                detail: "the certificate reads back differently".into(),
            }),
        };
        assert_eq!(cut.exit_code(), 3);
        assert!(
            cut.to_string().contains(
                "run `nuc-station write --request NUC-AAAA-BBBB-C --token-module /usr/lib/libkaztoken.so`"
            ),
            "{cut}"
        );
    }
}

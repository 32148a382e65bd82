//! The gRPC contract of the NUC RK core service, compiled from `proto/nuc/v1`.
//!
//! This crate owns the generated message and service types and the encoded descriptor set
//! that gRPC reflection serves. It must never hold behaviour: services are implemented in
//! nuc-server, and the `.proto` files are the single source of the contract.

#![allow(clippy::all, missing_docs)]

/// `nuc.v1`: portal, operator, admin, publisher and verification services, and the payloads
/// signed with CMS.
pub mod v1 {
    tonic::include_proto!("nuc.v1");

    // The signed payloads are defined once, in nuc-payloads (prost only); the contract uses
    // them under their proto names.
    pub use nuc_payloads::v1::{
        OperatorDecision, RenewalApplication, RevocationOrder, RevocationReason, operator_decision,
    };
}

/// Encoded `FileDescriptorSet` of the contract, for gRPC reflection.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/nuc_descriptor.bin"));

/// Metadata key carrying the reason code of a refusal.
pub const REASON_METADATA: &str = "nuc-reason";

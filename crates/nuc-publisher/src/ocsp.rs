//! OCSP (RFC 6960). Being written.

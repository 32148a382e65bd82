//! CRLs (full and delta). Being written.

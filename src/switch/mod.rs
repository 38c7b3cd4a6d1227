//! (placeholder)
pub mod vswitch;

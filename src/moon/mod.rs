//! Roots: the root core and signed world definitions.
pub mod root;
pub mod world;

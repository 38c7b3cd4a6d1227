//! Roots: the root core and signed world definitions.

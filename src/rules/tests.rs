//! Scenario tests of the whole layer: source -> compile -> evaluate.

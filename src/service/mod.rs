//! What both the node daemon and the simulator do with a node core's events and the
//! controller's decisions, so the two run the same code: verifying and applying signed
//! configs on a member, answering and pushing configs on the controller ([`member`]);
//! which managed addresses and routes a member installs ([`optin`]); and what the roots'
//! view of a node says about its NAT ([`netcheck`]).
//!
//! Imports point down: this layer may use `node` and `controller`; neither of them
//! imports it. Only `io`, `sim` and `lab` call it.

pub mod member;
pub mod netcheck;
pub mod optin;

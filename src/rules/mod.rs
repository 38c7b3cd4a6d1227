//! Flow rules: the language, its compiler, its compiled form and the evaluator.
//!
//! ```text
//! source ──parse──▶ syntax tree ──compile──▶ Compiled { RuleSet, names, origins, warnings }
//!                                                │                     │
//!                      ZeroTier rule JSON ◀──json──┘                    └──▶ evaluate(frame) ──▶ Decision
//! ```
//!
//! - The grammar lives in `rules-grammar/rules.pest`; it accepts ZeroTier's documented
//!   rules language so existing rule sets compile unchanged, plus `tag NAME=VALUE` as a
//!   test of the sender's tag and `include "file"`.
//! - [`compile`] turns source into a [`RuleSet`]: flat tables of MATCH and ACTION
//!   entries ([`Entry`]), capability tables and tag definitions, with limits enforced
//!   ([`MAX_BASE_ENTRIES`] and friends). Errors are [`Diagnostic`]s with file, line,
//!   column, the offending line with a caret, and a hint.
//! - [`json`] reads and writes ZeroTier's compiled-rule JSON (`{"type":"MATCH_ETHERTYPE",
//!   ...}`), the form the controller API's `rules`, `capabilities` and `tags` carry.
//! - [`evaluate`] decides one frame: pure, allocation-free, with the evaluation order
//!   documented above it. [`explain`] runs the same evaluation and records every step.
//! - [`describe`] builds a frame from a one-line description (for `skylan rules explain`
//!   and rule editors).
//!
//! Layering: this module uses `crate::types` and etherparse only; it does no I/O (file
//! includes go through a [`SourceLoader`] the caller provides) and reads no clock or
//! randomness. Callers: the node core (evaluate, on both the sending and the receiving
//! side), the controller (compile, JSON), the `skylan rules` CLI (all of it).

mod compile;
pub mod describe;
mod error;
mod eval;
pub mod explain;
// `Frame`'s methods are `pub` inside this private module; to be narrowed to `pub(crate)`.
#[allow(unreachable_pub)]
mod frame;
pub mod json;
mod parse;
mod render;
mod table;
mod values;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;

pub use compile::{
    CapabilityInfo, Compiled, LoadedSource, MAX_INCLUDE_DEPTH, MAX_INCLUDED_FILES, MAX_MACRO_DEPTH,
    MAX_MACRO_EXPANSIONS, MAX_SOURCE_BYTES, Names, NoIncludes, Origin, Origins, RESERVED_WORDS,
    SourceLoader, Spellings, TagInfo, compile, compile_str,
};
/// Did-you-mean for names outside the rules language too (the CLI's settings).
pub(crate) use error::suggest;
pub use error::{Diagnostic, RulesError, Severity};
pub use eval::{
    ActionEffect, Copies, DecidedBy, Decision, Direction, FrameContext, FrameCopy, MAX_COPIES,
    PeerTags, TableRef, Truth, Verdict, evaluate,
};
pub use render::{render_condition, render_rule};
pub use table::{
    Action, ByteRange, Capability, Condition, CopyLength, ETHERTYPES, Entry, IP_PROTOCOLS,
    Ipv4Cidr, Ipv6Cidr, MAX_BASE_ENTRIES, MAX_CAPABILITIES, MAX_CAPABILITY_ENTRIES, MAX_TAGS,
    Match, PortRange, RuleSet, RuleTableError, TableKind, TagDef, TagOp, chr, ethertype_name,
    protocol_name, rule_count, rules_of,
};

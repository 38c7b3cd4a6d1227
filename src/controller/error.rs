//! The controller layer's one error type.
//!
//! Every message says what was wrong, where (which field, which record) and, where it is
//! not obvious, what to do. The HTTP layer maps each variant to a status code in one
//! place (`io::http::ApiError`); nothing in `controller` knows about HTTP.

use thiserror::Error;

/// What went wrong in a controller operation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ControllerError {
    /// The network or member does not exist (HTTP 404).
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, e.g. `network 89e92ceee5000001`.
        what: String,
    },
    /// A field of a request body has the wrong type or an invalid value (HTTP 400).
    /// Nothing was changed.
    #[error("field `{field}`: {reason}")]
    BadField {
        /// JSON path of the field, e.g. `ipAssignmentPools[1].ipRangeStart`.
        field: String,
        /// What was wrong and what is expected.
        reason: String,
    },
    /// The request as a whole is malformed (HTTP 400): not JSON, not an object, a bad
    /// ID in the path. Nothing was changed.
    #[error("{0}")]
    BadRequest(String),
    /// `rulesSource` did not compile (HTTP 400). Nothing was changed.
    #[error("rulesSource line {line}, column {column}: {message}")]
    Rules {
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// The compiler's message.
        message: String,
    },
    /// The change conflicts with another record, e.g. an IP address that another
    /// member holds (HTTP 409). Nothing was changed.
    #[error("{0}")]
    Conflict(String),
    /// The network's pools cannot give a member the address it should get (HTTP 409).
    /// Nothing was changed; the message names the pools and what to do.
    #[error("{0}")]
    PoolExhausted(String),
    /// No free network number could be found (HTTP 503).
    #[error("{0}")]
    Exhausted(String),
    /// The controller's database file is damaged, emptied or unreadable. The
    /// controller refuses to start on it rather than begin again with no networks.
    #[error(
        "the controller database {path} {problem}; the controller will not start on a damaged database: restore the file from a backup, or, to start again with no networks and members, move it away"
    )]
    DamagedDatabase {
        /// The database file.
        path: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The database failed (HTTP 500). The operation was not applied.
    #[error("controller database error while {context}: {message}")]
    Storage {
        /// What the controller was doing.
        context: &'static str,
        /// The database's message.
        message: String,
    },
}

impl ControllerError {
    /// A `BadField` error.
    pub fn field(field: impl Into<String>, reason: impl Into<String>) -> Self {
        ControllerError::BadField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A `Storage` error from any displayable database error.
    pub fn storage(context: &'static str, err: impl std::fmt::Display) -> Self {
        ControllerError::Storage {
            context,
            message: err.to_string(),
        }
    }
}

//! Errors and warnings of the rules layer, and how they are shown.
//!
//! Every problem found in rules source is a [`Diagnostic`]: file, line and column (both
//! 1-based, the column counted in characters), a message saying what is wrong, the
//! offending line with a caret under the problem, and where possible a hint saying what to
//! do. `Display` renders it the way compilers do:
//!
//! ```text
//! policy.rules:3:26: error: unknown match `dprot`
//!    |
//!  3 | accept ethertype arp and dprot 22;
//!    |                          ^^^^^
//!    = hint: did you mean `dport`?
//! ```
//!
//! [`RulesError`] is the one error type of the layer: a source diagnostic, a problem in
//! compiled-rule JSON, or a rule table that breaks a limit. Nothing in this layer panics on
//! user input; every failure ends up here.

use std::fmt;

use super::table::RuleTableError;

/// The one error type of the rules layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    /// A problem in rules source, with its location.
    #[error("{0}")]
    Source(Box<Diagnostic>),
    /// A problem in compiled-rule JSON (`rules`, `capabilities`, `tags`).
    #[error("{at}: {message}")]
    Json {
        /// Where in the JSON document, e.g. `rules[3].etherType`.
        at: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A rule table or rule set that breaks a structural limit.
    #[error("{0}")]
    Table(#[from] RuleTableError),
    /// A frame, tag or capability description (for `explain`) that does not parse.
    #[error("{message}{}", .hint.as_ref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Describe {
        /// What is wrong.
        message: String,
        /// What to write instead.
        hint: Option<String>,
    },
}

impl RulesError {
    /// The source diagnostic, if this error is about rules source.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            RulesError::Source(d) => Some(d),
            _ => None,
        }
    }

    pub(crate) fn json(at: impl Into<String>, message: impl Into<String>) -> Self {
        RulesError::Json {
            at: at.into(),
            message: message.into(),
        }
    }
}

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Severity {
    /// The source does not compile.
    Error,
    /// The source compiles but probably does not do what its author meant.
    Warning,
}

/// A located problem in rules source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file name as given to the compiler (or as the include loader named it).
    pub file: String,
    /// 1-based line number.
    pub line: u32,
    /// 1-based column, in characters.
    pub col: u32,
    /// What is wrong.
    pub message: String,
    /// What to do about it, when we can tell.
    pub hint: Option<String>,
    /// The text of the offending line (without its line break).
    pub line_text: String,
    /// How many characters the caret underlines (at least 1).
    pub caret_len: u32,
    /// Context, innermost first, e.g. "in macro `web`, included at a.rules:9:1".
    pub notes: Vec<String>,
}

impl Diagnostic {
    /// Adds a hint.
    pub(crate) fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{}:{}:{}: {sev}: {}",
            self.file, self.line, self.col, self.message
        )?;
        let num = self.line.to_string();
        let pad = " ".repeat(num.len());
        write!(f, "\n{pad} |\n{num} | {}\n{pad} | ", self.line_text)?;
        // Reproduce tabs so the caret lines up under tab-indented source.
        for c in self
            .line_text
            .chars()
            .take(self.col.saturating_sub(1) as usize)
        {
            f.write_str(if c == '\t' { "\t" } else { " " })?;
        }
        write!(f, "{}", "^".repeat(self.caret_len.max(1) as usize))?;
        for note in &self.notes {
            write!(f, "\n{pad} = note: {note}")?;
        }
        if let Some(h) = &self.hint {
            write!(f, "\n{pad} = hint: {h}")?;
        }
        Ok(())
    }
}

/// A byte range in one source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) struct Span {
    pub file: u16,
    pub start: u32,
    pub end: u32,
}

/// One loaded source file.
#[derive(Debug)]
pub(crate) struct SourceFile {
    pub name: String,
    pub text: String,
    line_starts: Vec<u32>,
}

/// All files of one compilation, indexed by [`Span::file`].
#[derive(Debug, Default)]
pub(crate) struct Sources {
    files: Vec<SourceFile>,
}

impl Sources {
    pub(crate) fn add(&mut self, name: String, text: String) -> u16 {
        let mut line_starts = vec![0u32];
        line_starts.extend(
            text.bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i as u32 + 1),
        );
        self.files.push(SourceFile {
            name,
            text,
            line_starts,
        });
        (self.files.len() - 1) as u16
    }

    pub(crate) fn file(&self, id: u16) -> &SourceFile {
        // Invariant: spans are only made for files added to this `Sources`.
        &self.files[id as usize]
    }

    pub(crate) fn len(&self) -> usize {
        self.files.len()
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub(crate) fn line_col(&self, file: u16, offset: u32) -> (u32, u32) {
        let f = self.file(file);
        let offset = offset.min(f.text.len() as u32);
        let line = f.line_starts.partition_point(|&s| s <= offset).max(1);
        let start = f.line_starts[line - 1] as usize;
        let col = f
            .text
            .get(start..offset as usize)
            .map(|s| s.chars().count())
            .unwrap_or(0);
        (line as u32, col as u32 + 1)
    }

    /// The text of a 1-based line, without its line break.
    pub(crate) fn line_text(&self, file: u16, line: u32) -> &str {
        let f = self.file(file);
        let i = (line.max(1) - 1) as usize;
        let start = f.line_starts.get(i).copied().unwrap_or(0) as usize;
        let end = f
            .line_starts
            .get(i + 1)
            .map(|&e| e as usize)
            .unwrap_or(f.text.len());
        f.text
            .get(start..end)
            .unwrap_or("")
            .trim_end_matches(['\n', '\r'])
    }

    /// The source text a span covers.
    pub(crate) fn text(&self, span: Span) -> &str {
        self.file(span.file)
            .text
            .get(span.start as usize..span.end as usize)
            .unwrap_or("")
    }

    /// A diagnostic pointing at `span` (clipped to its first line).
    pub(crate) fn diagnostic(&self, severity: Severity, span: Span, message: String) -> Diagnostic {
        let (line, col) = self.line_col(span.file, span.start);
        let line_text = self.line_text(span.file, line).to_string();
        let covered = self.text(span);
        let first_line = covered.split('\n').next().unwrap_or("");
        let caret_len = first_line.trim_end_matches('\r').chars().count().max(1) as u32;
        Diagnostic {
            severity,
            file: self.file(span.file).name.clone(),
            line,
            col,
            message,
            hint: None,
            line_text,
            caret_len,
            notes: Vec::new(),
        }
    }

    pub(crate) fn error(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        self.diagnostic(Severity::Error, span, message.into())
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a
/// plausible typo. Comparison is case-insensitive.
pub(crate) fn suggest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let w = word.to_lowercase();
    let limit = match w.chars().count() {
        0..=2 => 1,
        3..=5 => 2,
        _ => 3,
    };
    candidates
        .into_iter()
        .map(|c| (edit_distance(&w, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, with a transposition of neighbours counting as one edit.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev2 = vec![0usize; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0usize; b.len() + 1];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(prev2[j - 2] + 1);
            }
            cur[j] = v;
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_but_not_strangers() {
        let kws = ["dport", "sport", "ethertype", "accept"];
        assert_eq!(suggest("dprot", kws), Some("dport"));
        assert_eq!(suggest("acept", kws), Some("accept"));
        assert_eq!(suggest("EtherTyp", kws), Some("ethertype"));
        assert_eq!(suggest("banana", kws), None);
    }

    #[test]
    fn diagnostics_render_with_line_and_caret() {
        let mut s = Sources::default();
        let f = s.add("a.rules".into(), "accept;\n\taccept dprot 22;\n".into());
        let d = s
            .error(
                Span {
                    file: f,
                    start: 16,
                    end: 21,
                },
                "unknown match `dprot`",
            )
            .with_hint("did you mean `dport`?");
        assert_eq!((d.line, d.col), (2, 9));
        let text = d.to_string();
        assert_eq!(
            text,
            "a.rules:2:9: error: unknown match `dprot`\n  |\n2 | \taccept dprot 22;\n  | \t       ^^^^^\n  = hint: did you mean `dport`?"
        );
    }

    #[test]
    fn line_col_handles_end_of_file_and_multibyte_text() {
        let mut s = Sources::default();
        let f = s.add("x".into(), "tag städte id 1;".into());
        assert_eq!(s.line_col(f, 11), (1, 11));
        assert_eq!(s.line_col(f, 999), (1, 17));
    }
}

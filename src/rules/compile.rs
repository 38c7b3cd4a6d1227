//! Rules source to a [`RuleSet`]: includes, definitions, macro expansion, value checks and
//! limits.
//!
//! Passes, in order:
//! 1. parse the main file; replace every top-level `include "file"` with the items of
//!    that file (loaded through the caller's [`SourceLoader`], relative to the including
//!    file; at most [`MAX_INCLUDE_DEPTH`] deep, no cycles);
//! 2. collect `tag`, `cap` and `macro` definitions from all items (they may appear
//!    anywhere, before or after their use; names are case-insensitive and unique; IDs are
//!    unique);
//! 3. render the base rules and each capability's rules into tables, expanding
//!    `include NAME(args)` macro calls (parameters substitute whole arguments; at most
//!    [`MAX_MACRO_DEPTH`] nested calls, no recursion) and checking every argument, and
//!    the entry limits as tables grow;
//! 4. look for likely mistakes and report them as warnings.
//!
//! The compiler does no I/O: file includes go through [`SourceLoader`]. Every error is a
//! [`Diagnostic`] with the location of the offending token. Called by the controller
//! (`rulesSource`), the `skylan rules` CLI, and the tests.

use std::collections::HashMap;

use super::error::{Diagnostic, RulesError, Severity, Sources, Span, suggest};
use super::parse::{
    ActionKw, BodyItem, CallAst, CapAst, Item, MATCH_KEYWORDS, MacroAst, MatchAst, MatchKw,
    Modifier, RuleAst, TagAst, TagProp, Word, parse_file,
};
use super::table::{
    Action, ByteRange, Capability, Condition, Entry, MAX_BASE_ENTRIES, MAX_CAPABILITIES,
    MAX_CAPABILITY_ENTRIES, MAX_TAGS, Match, RuleSet, TagDef, TagOp,
};
use super::values::{self, IpNet, ValueError};

/// Largest source file accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1 << 20;
/// Deepest chain of `include "file"`.
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Most files one compilation reads (the main file and every include, counted each time).
pub const MAX_INCLUDED_FILES: usize = 256;
/// Deepest chain of macro calls.
pub const MAX_MACRO_DEPTH: usize = 16;
/// Most macro calls expanded in one compilation (bounds macros that include each other
/// many times without producing rules).
pub const MAX_MACRO_EXPANSIONS: usize = 4096;

/// Words ZeroTier reserves besides the match keywords (`parse::MATCH_KEYWORDS`); none
/// of them can name a tag, capability or macro.
pub const RESERVED_WORDS: &[&str] = &[
    "macro", "tag", "cap", "default", "drop", "accept", "tee", "watch", "redirect", "break",
    "priority", "type", "enum", "class", "define", "import", "include", "log", "not", "xor", "or",
    "and", "set", "var", "let",
];

/// Where the compiler gets the text of `include "path"` files.
pub trait SourceLoader {
    /// Loads `path` as written in an `include` inside the file named `from` (a name this
    /// loader returned earlier, or the name given to [`compile`]). Returns the file's
    /// display name (also used to detect include cycles) and its text, or a reason.
    fn load(&mut self, from: &str, path: &str) -> Result<LoadedSource, String>;
}

/// A file returned by a [`SourceLoader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadedSource {
    /// Name shown in diagnostics; two loads of the same file must give the same name.
    pub name: String,
    /// The file's text.
    pub text: String,
}

/// A loader that refuses every file include (for sources that stand alone, such as the
/// controller's `rulesSource`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIncludes;

impl SourceLoader for NoIncludes {
    fn load(&mut self, _from: &str, path: &str) -> Result<LoadedSource, String> {
        Err(format!(
            "cannot include \"{path}\": file includes are not available here; paste the rules of that file instead"
        ))
    }
}

impl<F> SourceLoader for F
where
    F: FnMut(&str, &str) -> Result<LoadedSource, String>,
{
    fn load(&mut self, from: &str, path: &str) -> Result<LoadedSource, String> {
        self(from, path)
    }
}

/// The result of compiling rules source.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// What nodes evaluate.
    pub rules: RuleSet,
    /// Names of tags and capabilities (for JSON `tagsByName`/`capabilitiesByName`, UIs and
    /// `explain`).
    pub names: Names,
    /// Where each rule came from.
    pub origins: Origins,
    /// Values the compiled JSON shows as the source wrote them.
    pub spellings: Spellings,
    /// Things that compile but are probably mistakes.
    pub warnings: Vec<Diagnostic>,
}

/// Values that ZeroTier's compiler copies into its JSON as the source wrote them instead
/// of rendering them: the networks of `ipsrc`/`ipdest` (`FD00:0::1/64` stays so) and the
/// node addresses of `tee`, `watch` and `redirect` (`89E92CEEE5` stays so). Only values
/// whose spelling differs from the canonical rendering are listed, as `(entry index,
/// text)` in index order. [`Compiled`]'s JSON uses them; the [`RuleSet`] itself (what
/// nodes evaluate and the controller stores and renders) holds the parsed values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Spellings {
    /// For the base table.
    pub base: Vec<(usize, String)>,
    /// One list per capability, in [`RuleSet::capabilities`] order.
    pub capabilities: Vec<Vec<(usize, String)>>,
}

/// Tag and capability names of a compiled rule set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names {
    /// Tag definitions with their names, enums and flags, in definition order.
    pub tags: Vec<TagInfo>,
    /// Capability names and IDs, in definition order.
    pub capabilities: Vec<CapabilityInfo>,
}

/// A named tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagInfo {
    /// Lower-cased name.
    pub name: String,
    /// Tag ID.
    pub id: u32,
    /// Default value.
    pub default: Option<u32>,
    /// Enum names (lower-cased) and values, in definition order.
    pub enums: Vec<(String, u32)>,
    /// Flag names (lower-cased) and masks, in definition order.
    pub flags: Vec<(String, u32)>,
}

impl TagInfo {
    /// The value a symbolic or numeric tag value stands for: a flag name, an enum name
    /// (both case-insensitive) or a number.
    pub fn value_of(&self, text: &str) -> Option<u32> {
        let lc = text.to_lowercase();
        self.flags
            .iter()
            .chain(self.enums.iter())
            .find(|(n, _)| *n == lc)
            .map(|(_, v)| *v)
            .or_else(|| {
                values::number(text, "", u64::from(u32::MAX))
                    .ok()
                    .map(|v| v as u32)
            })
    }

    /// A readable form of `value`: an enum name if one matches, else the number.
    pub fn describe(&self, value: u32) -> String {
        match self.enums.iter().find(|(_, v)| *v == value) {
            Some((n, _)) => format!("{n} ({value})"),
            None => value.to_string(),
        }
    }
}

/// A named capability.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityInfo {
    /// Lower-cased name.
    pub name: String,
    /// Capability ID.
    pub id: u32,
}

impl Names {
    /// A tag by (case-insensitive) name.
    pub fn tag(&self, name: &str) -> Option<&TagInfo> {
        let lc = name.to_lowercase();
        self.tags.iter().find(|t| t.name == lc)
    }

    /// A tag by ID.
    pub fn tag_by_id(&self, id: u32) -> Option<&TagInfo> {
        self.tags.iter().find(|t| t.id == id)
    }

    /// A capability by (case-insensitive) name.
    pub fn capability(&self, name: &str) -> Option<&CapabilityInfo> {
        let lc = name.to_lowercase();
        self.capabilities.iter().find(|c| c.name == lc)
    }

    /// A capability's name by ID.
    pub fn capability_by_id(&self, id: u32) -> Option<&CapabilityInfo> {
        self.capabilities.iter().find(|c| c.id == id)
    }
}

/// Where the rules of a compiled rule set came from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// One per rule of the base table, in rule order.
    pub base: Vec<Origin>,
    /// One list per capability (in [`RuleSet::capabilities`] order), one per rule.
    pub capabilities: Vec<Vec<Origin>>,
}

/// The source location of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// File name.
    pub file: String,
    /// 1-based line of the rule's action keyword.
    pub line: u32,
    /// 1-based column of the rule's action keyword.
    pub col: u32,
    /// The rule as written, comments removed and whitespace collapsed.
    pub text: String,
    /// Macro expansions that produced it, innermost first (e.g. "macro `web` included at
    /// a.rules:12:1").
    pub via: Vec<String>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.col)?;
        for v in &self.via {
            write!(f, " (from {v})")?;
        }
        Ok(())
    }
}

/// Compiles rules source. `name` is the file name used in diagnostics; `loader` provides
/// files named by `include "path"`.
pub fn compile(
    name: &str,
    source: &str,
    loader: &mut dyn SourceLoader,
) -> Result<Compiled, RulesError> {
    Compiler::new(loader)
        .run(name, source)
        .map_err(RulesError::Source)
}

/// Compiles source that includes no files; diagnostics name it `<rules>`.
pub fn compile_str(source: &str) -> Result<Compiled, RulesError> {
    compile("<rules>", source, &mut NoIncludes)
}

type CResult<T> = Result<T, Box<Diagnostic>>;

/// A macro call being expanded.
struct Frame<'a> {
    name: &'a str,
    call: Span,
    params: HashMap<String, Word>,
}

/// A tag definition with its source.
struct TagEntry {
    info: TagInfo,
    name_span: Span,
}

struct CapEntry<'a> {
    ast: &'a CapAst,
    id: u32,
}

struct Compiler<'l> {
    loader: &'l mut dyn SourceLoader,
    sources: Sources,
    /// For each file, the `include` statement that brought it in.
    included_from: Vec<Option<Span>>,
    warnings: Vec<Diagnostic>,
    /// Macro calls expanded so far.
    expansions: usize,
}

impl<'l> Compiler<'l> {
    fn new(loader: &'l mut dyn SourceLoader) -> Self {
        Self {
            loader,
            sources: Sources::default(),
            included_from: Vec::new(),
            warnings: Vec::new(),
            expansions: 0,
        }
    }

    fn run(mut self, name: &str, source: &str) -> CResult<Compiled> {
        let main = self.add_file(name.to_string(), source.to_string(), None)?;
        let mut items = Vec::new();
        self.load_items(main, 0, &mut vec![name.to_string()], &mut items)?;

        // Pass 2: definitions.
        let mut tags: Vec<TagEntry> = Vec::new();
        let mut caps: Vec<CapEntry<'_>> = Vec::new();
        let mut macros: HashMap<String, &MacroAst> = HashMap::new();
        let mut cap_names: HashMap<String, Span> = HashMap::new();
        for item in &items {
            match item {
                Item::Tag(t) => {
                    let entry = self.tag_def(t)?;
                    if let Some(prev) = tags.iter().find(|e| e.info.name == entry.info.name) {
                        return Err(self.dup(t.name.span, "tag", &entry.info.name, prev.name_span));
                    }
                    if let Some(prev) = tags.iter().find(|e| e.info.id == entry.info.id) {
                        return Err(self.dup_id(t.name.span, "tag", entry.info.id, prev.name_span));
                    }
                    if tags.len() == MAX_TAGS {
                        return Err(Box::new(self.err(
                            t.name.span,
                            format!("too many tags: at most {MAX_TAGS} may be defined"),
                        )));
                    }
                    tags.push(entry);
                }
                Item::Cap(c) => {
                    let lc = self.def_name(&c.name, "capability")?;
                    if let Some(prev) = cap_names.get(&lc) {
                        return Err(self.dup(c.name.span, "capability", &lc, *prev));
                    }
                    let id = self.cap_id(c)?;
                    if let Some(prev) = caps.iter().find(|e| e.id == id) {
                        return Err(self.dup_id(c.name.span, "capability", id, prev.ast.name.span));
                    }
                    if caps.len() == MAX_CAPABILITIES {
                        return Err(Box::new(self.err(
                            c.name.span,
                            format!(
                                "too many capabilities: at most {MAX_CAPABILITIES} may be defined"
                            ),
                        )));
                    }
                    cap_names.insert(lc, c.name.span);
                    caps.push(CapEntry { ast: c, id });
                }
                Item::Macro(m) => {
                    let lc = self.def_name(&m.name, "macro")?;
                    if let Some(prev) = macros.get(&lc) {
                        return Err(self.dup(m.name.span, "macro", &lc, prev.name.span));
                    }
                    self.check_params(m)?;
                    macros.insert(lc, m);
                }
                _ => {}
            }
        }
        let ctx = Ctx {
            tags: &tags,
            macros: &macros,
        };

        // Pass 3: render tables.
        let mut base = Table::new(MAX_BASE_ENTRIES, "the base rule table");
        for item in &items {
            match item {
                Item::Rule(r) => self.rule(&ctx, r, &mut Vec::new(), &mut base)?,
                Item::IncludeMacro(c) => self.call(&ctx, c, &mut Vec::new(), &mut base)?,
                _ => {}
            }
        }
        let mut capabilities = Vec::new();
        let mut cap_origins = Vec::new();
        let mut cap_spellings = Vec::new();
        for c in &caps {
            let what = format!("capability `{}`", c.ast.name.text.to_lowercase());
            let mut t = Table::new(MAX_CAPABILITY_ENTRIES, &what);
            for b in &c.ast.body {
                match b {
                    BodyItem::Rule(r) => self.rule(&ctx, r, &mut Vec::new(), &mut t)?,
                    BodyItem::IncludeMacro(call) => {
                        self.call(&ctx, call, &mut Vec::new(), &mut t)?
                    }
                    BodyItem::IncludeFile { span } => return Err(self.file_include_here(*span)),
                }
            }
            self.lint_table(&t, false);
            // Invariant: `Table` enforced the entry limit and ends every rule with an action.
            let cap = Capability::new(c.id, c.ast.default, t.entries)
                .map_err(|e| Box::new(self.err(c.ast.name.span, e.to_string())))?;
            capabilities.push(cap);
            cap_origins.push(t.origins);
            cap_spellings.push(t.written);
        }
        self.lint_table(&base, true);
        if base.entries.is_empty() && capabilities.is_empty() {
            let span = Span {
                file: main,
                start: 0,
                end: 0,
            };
            let d = self.warn(
                span,
                "this rule set has no rules, so every frame is dropped (the default is drop)",
            );
            self.warnings
                .push(d.with_hint("add `accept;` to let traffic through"));
        }

        let names = Names {
            tags: tags.iter().map(|t| t.info.clone()).collect(),
            capabilities: caps
                .iter()
                .map(|c| CapabilityInfo {
                    name: c.ast.name.text.to_lowercase(),
                    id: c.id,
                })
                .collect(),
        };
        let tag_defs = tags
            .iter()
            .map(|t| TagDef {
                id: t.info.id,
                default: t.info.default,
            })
            .collect();
        let rules = RuleSet::new(base.entries, capabilities, tag_defs).map_err(|e| {
            Box::new(self.err(
                Span {
                    file: main,
                    start: 0,
                    end: 0,
                },
                e.to_string(),
            ))
        })?;
        Ok(Compiled {
            rules,
            names,
            origins: Origins {
                base: base.origins,
                capabilities: cap_origins,
            },
            spellings: Spellings {
                base: base.written,
                capabilities: cap_spellings,
            },
            warnings: self.warnings,
        })
    }

    // ---- files and includes ------------------------------------------------------------

    fn add_file(&mut self, name: String, text: String, from: Option<Span>) -> CResult<u16> {
        if text.len() > MAX_SOURCE_BYTES {
            let msg = format!(
                "{name} is {} bytes; rules files may be at most {MAX_SOURCE_BYTES} bytes",
                text.len()
            );
            return Err(Box::new(match from {
                Some(span) => self.err(span, msg),
                None => {
                    let id = self.sources.add(name, String::new());
                    self.included_from.push(None);
                    self.err(
                        Span {
                            file: id,
                            start: 0,
                            end: 0,
                        },
                        msg,
                    )
                }
            }));
        }
        if self.sources.len() >= MAX_INCLUDED_FILES {
            let span = from.unwrap_or_default();
            return Err(Box::new(
                self.err(
                    span,
                    format!("more than {MAX_INCLUDED_FILES} included files"),
                )
                .with_hint("include each file once"),
            ));
        }
        let id = self.sources.add(name, text);
        self.included_from.push(from);
        Ok(id)
    }

    fn load_items(
        &mut self,
        file: u16,
        depth: usize,
        chain: &mut Vec<String>,
        out: &mut Vec<Item>,
    ) -> CResult<()> {
        let items =
            parse_file(&self.sources, file).map_err(|d| self.with_include_notes(d, file))?;
        for item in items {
            match item {
                Item::IncludeFile { path, span } => {
                    if depth + 1 > MAX_INCLUDE_DEPTH {
                        return Err(Box::new(self.err(
                            span,
                            format!("includes are nested more than {MAX_INCLUDE_DEPTH} deep"),
                        )));
                    }
                    let from = self.sources.file(file).name.clone();
                    let loaded = self.loader.load(&from, &path.text).map_err(|reason| {
                        Box::new(self.err(path.span, reason).with_hint(
                            "the path is relative to the directory of the including file",
                        ))
                    })?;
                    if chain.contains(&loaded.name) {
                        return Err(Box::new(self.err(
                            path.span,
                            format!(
                                "include cycle: {} includes itself through {}",
                                loaded.name,
                                chain.join(" -> ")
                            ),
                        )));
                    }
                    let id = self.add_file(loaded.name.clone(), loaded.text, Some(span))?;
                    chain.push(loaded.name);
                    self.load_items(id, depth + 1, chain, out)?;
                    chain.pop();
                }
                other => out.push(other),
            }
        }
        Ok(())
    }

    // ---- diagnostics -------------------------------------------------------------------

    fn err(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        let d = self.sources.error(span, message);
        *self.with_include_notes(Box::new(d), span.file)
    }

    fn warn(&self, span: Span, message: impl Into<String>) -> Diagnostic {
        let d = self
            .sources
            .diagnostic(Severity::Warning, span, message.into());
        *self.with_include_notes(Box::new(d), span.file)
    }

    fn with_include_notes(&self, mut d: Box<Diagnostic>, file: u16) -> Box<Diagnostic> {
        let mut f = file;
        while let Some(Some(span)) = self.included_from.get(f as usize) {
            let (l, c) = self.sources.line_col(span.file, span.start);
            d.notes.push(format!(
                "included from {}:{l}:{c}",
                self.sources.file(span.file).name
            ));
            f = span.file;
        }
        d
    }

    fn value_err(&self, span: Span, e: ValueError, frames: &[Frame<'_>]) -> Box<Diagnostic> {
        let mut d = self.err(span, e.message);
        d.hint = e.hint;
        self.add_frame_notes(&mut d, frames);
        Box::new(d)
    }

    fn add_frame_notes(&self, d: &mut Diagnostic, frames: &[Frame<'_>]) {
        for f in frames.iter().rev() {
            let (l, c) = self.sources.line_col(f.call.file, f.call.start);
            d.notes.push(format!(
                "in macro `{}`, included at {}:{l}:{c}",
                f.name,
                self.sources.file(f.call.file).name
            ));
        }
    }

    fn dup(&self, span: Span, what: &str, name: &str, prev: Span) -> Box<Diagnostic> {
        let (l, c) = self.sources.line_col(prev.file, prev.start);
        Box::new(
            self.err(span, format!("{what} `{name}` is defined twice"))
                .with_hint(format!(
                    "the first definition is at {}:{l}:{c}; rename one of them",
                    self.sources.file(prev.file).name
                )),
        )
    }

    fn dup_id(&self, span: Span, what: &str, id: u32, prev: Span) -> Box<Diagnostic> {
        let (l, c) = self.sources.line_col(prev.file, prev.start);
        Box::new(
            self.err(span, format!("{what} ID {id} is already used"))
                .with_hint(format!(
                    "{} at {}:{l}:{c} has it; every {what} needs its own ID",
                    self.sources.text(prev),
                    self.sources.file(prev.file).name
                )),
        )
    }

    fn file_include_here(&self, span: Span) -> Box<Diagnostic> {
        Box::new(
            self.err(span, "`include \"file\"` is only allowed at the top level")
                .with_hint("include the file outside the `cap` or `macro` block; it may define macros to use here"),
        )
    }

    // ---- definitions -------------------------------------------------------------------

    /// Checks a tag, capability or macro name and returns it lower-cased.
    fn def_name(&self, name: &Word, what: &str) -> CResult<String> {
        let lc = name.text.to_lowercase();
        if RESERVED_WORDS.contains(&lc.as_str()) || MATCH_KEYWORDS.contains(&lc.as_str()) {
            return Err(Box::new(
                self.err(
                    name.span,
                    format!(
                        "`{}` is a reserved word and cannot name a {what}",
                        name.text
                    ),
                )
                .with_hint("choose another name"),
            ));
        }
        Ok(lc)
    }

    fn tag_def(&self, t: &TagAst) -> CResult<TagEntry> {
        let name = self.def_name(&t.name, "tag")?;
        let mut id: Option<u32> = None;
        let mut default: Option<&Word> = None;
        let mut enums: Vec<(String, u32)> = Vec::new();
        let mut flags: Vec<(String, u32)> = Vec::new();
        // Name lookups, so tags with many enums or flags stay linear to compile.
        let mut enum_names: std::collections::HashSet<String> = Default::default();
        let mut flag_masks: HashMap<String, u32> = HashMap::new();
        for p in &t.props {
            match p {
                TagProp::Id(w) => {
                    if id.is_some() {
                        return Err(Box::new(self.err(w.span, "tag has two `id`s")));
                    }
                    id = Some(self.u32_arg(w, "a tag ID")?);
                }
                TagProp::Default(span, w) => {
                    if default.is_some() {
                        return Err(Box::new(self.err(*span, "tag has two `default`s")));
                    }
                    default = Some(w);
                }
                TagProp::Enum(v, n) => {
                    let value = self.u32_arg(v, "an enum value")?;
                    let lc = n.text.to_lowercase();
                    if flag_masks.contains_key(&lc) {
                        return Err(self.enum_and_flag(n, &name));
                    }
                    if !enum_names.insert(lc.clone()) {
                        return Err(Box::new(
                            self.err(n.span, format!("enum name `{lc}` is used twice")),
                        ));
                    }
                    enums.push((lc, value));
                }
                TagProp::Flag(bits, n) => {
                    let mut mask = 0u32;
                    for part in bits.text.split(',').filter(|p| !p.is_empty()) {
                        let lc = part.to_lowercase();
                        if let Some(m) = flag_masks.get(&lc) {
                            mask |= m;
                        } else {
                            let b = values::number(part, "a flag bit", 31).map_err(|e| {
                                self.value_err(
                                    bits.span,
                                    ValueError {
                                        message: e.message,
                                        hint: Some("flag bits are numbers 0-31 or names of flags defined earlier in this tag, separated by commas".into()),
                                    },
                                    &[],
                                )
                            })?;
                            mask |= 1 << b;
                        }
                    }
                    let lc = n.text.to_lowercase();
                    if enum_names.contains(&lc) {
                        return Err(self.enum_and_flag(n, &name));
                    }
                    if flag_masks.insert(lc.clone(), mask).is_some() {
                        return Err(Box::new(
                            self.err(n.span, format!("flag name `{lc}` is used twice")),
                        ));
                    }
                    flags.push((lc, mask));
                }
            }
        }
        let Some(id) = id else {
            return Err(Box::new(
                self.err(t.name.span, format!("tag `{name}` has no `id`"))
                    .with_hint(format!("give it a number: `tag {name} id 1 default 0;`")),
            ));
        };
        let mut info = TagInfo {
            name,
            id,
            default: None,
            enums,
            flags,
        };
        if let Some(w) = default {
            info.default = Some(info.value_of(&w.text).ok_or_else(|| {
                Box::new(
                    self.err(
                        w.span,
                        format!("`{}` is not a value of tag `{}`", w.text, info.name),
                    )
                    .with_hint(self.tag_value_hint(&info)),
                )
            })?);
        }
        Ok(TagEntry {
            info,
            name_span: t.name.span,
        })
    }

    /// A name given to both an enum value and a flag of one tag.
    fn enum_and_flag(&self, n: &Word, tag: &str) -> Box<Diagnostic> {
        Box::new(
            self.err(
                n.span,
                format!(
                    "`{}` names both an enum value and a flag of tag `{tag}`",
                    n.text
                ),
            )
            .with_hint("give them different names (ZeroTier reads such a name as the flag in rules but as the enum value in `default`)"),
        )
    }

    fn tag_value_hint(&self, t: &TagInfo) -> String {
        let mut names: Vec<&str> = t.enums.iter().map(|(n, _)| n.as_str()).collect();
        names.extend(t.flags.iter().map(|(n, _)| n.as_str()));
        if names.is_empty() {
            "use a number 0-4294967295".into()
        } else {
            format!("use a number or one of: {}", names.join(", "))
        }
    }

    fn cap_id(&self, c: &CapAst) -> CResult<u32> {
        match c.ids.as_slice() {
            [(_, w)] => self.u32_arg(w, "a capability ID"),
            [] => Err(Box::new(
                self.err(
                    c.name.span,
                    format!("capability `{}` has no `id`", c.name.text),
                )
                .with_hint(format!("give it a number: `cap {} id 1 ...;`", c.name.text)),
            )),
            [_, (span, _), ..] => Err(Box::new(self.err(*span, "capability has two `id`s"))),
        }
    }

    fn check_params(&self, m: &MacroAst) -> CResult<()> {
        for (i, p) in m.params.iter().enumerate() {
            if m.params[..i].iter().any(|q| q.text == p.text) {
                return Err(Box::new(
                    self.err(p.span, format!("parameter `{}` is listed twice", p.text)),
                ));
            }
        }
        Ok(())
    }

    fn u32_arg(&self, w: &Word, what: &str) -> CResult<u32> {
        values::number(&w.text, what, u64::from(u32::MAX))
            .map(|v| v as u32)
            .map_err(|e| self.value_err(w.span, e, &[]))
    }

    // ---- rules -------------------------------------------------------------------------

    fn call<'a>(
        &mut self,
        ctx: &Ctx<'a>,
        call: &'a CallAst,
        frames: &mut Vec<Frame<'a>>,
        out: &mut Table,
    ) -> CResult<()> {
        let lc = call.name.text.to_lowercase();
        let Some(m) = ctx.macros.get(&lc).copied() else {
            let names: Vec<&str> = ctx.macros.keys().map(String::as_str).collect();
            let mut d = self.err(
                call.name.span,
                format!("no macro named `{}`", call.name.text),
            );
            d.hint = Some(match suggest(&call.name.text, names.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => "define it with `macro NAME($param) RULES ;` anywhere in the file".into(),
            });
            self.add_frame_notes(&mut d, frames);
            return Err(Box::new(d));
        };
        if frames.iter().any(|f| f.name == m.name.text.to_lowercase())
            || frames.len() >= MAX_MACRO_DEPTH
        {
            let mut d = self.err(
                call.span,
                format!("macro `{lc}` includes itself (directly or through other macros)"),
            );
            self.add_frame_notes(&mut d, frames);
            return Err(Box::new(d));
        }
        self.expansions += 1;
        if self.expansions > MAX_MACRO_EXPANSIONS {
            let mut d = self
                .err(
                    call.span,
                    format!("more than {MAX_MACRO_EXPANSIONS} macro expansions"),
                )
                .with_hint("macros include each other too many times; simplify the macros");
            self.add_frame_notes(&mut d, frames);
            return Err(Box::new(d));
        }
        if call.args.len() != m.params.len() {
            let list: Vec<&str> = m.params.iter().map(|p| p.text.as_str()).collect();
            let mut d = self
                .err(
                    call.span,
                    format!(
                        "macro `{lc}` takes {} argument(s), got {}",
                        m.params.len(),
                        call.args.len()
                    ),
                )
                .with_hint(if list.is_empty() {
                    format!("write `include {lc}`")
                } else {
                    format!(
                        "write `include {lc}({})` with a value for each of {}",
                        vec!["…"; list.len()].join(","),
                        list.join(", ")
                    )
                });
            self.add_frame_notes(&mut d, frames);
            return Err(Box::new(d));
        }
        let mut params = HashMap::new();
        for (p, a) in m.params.iter().zip(&call.args) {
            // Arguments may themselves name the caller's parameters.
            let value = self.substitute(a, frames)?;
            params.insert(p.text.to_lowercase(), value);
        }
        frames.push(Frame {
            name: ctx.macro_name(&lc),
            call: call.span,
            params,
        });
        for b in &m.body {
            match b {
                BodyItem::Rule(r) => self.rule(ctx, r, frames, out)?,
                BodyItem::IncludeMacro(c) => self.call(ctx, c, frames, out)?,
                BodyItem::IncludeFile { span } => return Err(self.file_include_here(*span)),
            }
        }
        frames.pop();
        Ok(())
    }

    /// Replaces a `$param` argument with the value of the innermost macro call.
    fn substitute(&self, w: &Word, frames: &[Frame<'_>]) -> CResult<Word> {
        if !w.text.starts_with('$') {
            return Ok(w.clone());
        }
        let Some(f) = frames.last() else {
            return Err(Box::new(
                self.err(
                    w.span,
                    format!(
                        "`{}` is a macro parameter, but this is not inside a macro",
                        w.text
                    ),
                )
                .with_hint("parameters can be used only in the rules of the macro that lists them"),
            ));
        };
        match f.params.get(&w.text.to_lowercase()) {
            Some(v) => Ok(v.clone()),
            None => {
                let mut names: Vec<&str> = f.params.keys().map(String::as_str).collect();
                names.sort_unstable();
                let mut d = self
                    .err(
                        w.span,
                        format!("macro `{}` has no parameter `{}`", f.name, w.text),
                    )
                    .with_hint(if names.is_empty() {
                        format!("macro `{}` takes no parameters", f.name)
                    } else {
                        format!("its parameters are {}", names.join(", "))
                    });
                self.add_frame_notes(&mut d, frames);
                Err(Box::new(d))
            }
        }
    }

    fn rule<'a>(
        &mut self,
        ctx: &Ctx<'a>,
        r: &'a RuleAst,
        frames: &mut Vec<Frame<'a>>,
        out: &mut Table,
    ) -> CResult<()> {
        let mut entries = Vec::with_capacity(r.matches.len() + 1);
        let mut written = Vec::new();
        for (i, m) in r.matches.iter().enumerate() {
            let (entry, spelling) = self.match_entry(ctx, m, frames)?;
            if let Some(text) = spelling {
                written.push((out.entries.len() + i, text));
            }
            if i == 0 && entry.or {
                let span = m
                    .modifiers
                    .iter()
                    .find(|(k, _)| *k == Modifier::Or)
                    .map(|(_, s)| *s)
                    .unwrap_or(m.kw_span);
                let mut d = self.warn(
                    span,
                    "`or` on the first match makes this rule match every frame",
                );
                d.hint = Some("a rule starts out true and `true or X` is true; remove `or` or put another match before it".into());
                self.add_frame_notes(&mut d, frames);
                self.warnings.push(d);
            }
            entries.push(Entry::Match(entry));
        }
        let (action, spelling) = self.action(r, frames)?;
        if let Some(text) = spelling {
            written.push((out.entries.len() + entries.len(), text));
        }
        entries.push(Entry::Action(action));
        if out.entries.len() + entries.len() > out.limit {
            let mut d = self
                .err(
                    r.action_span,
                    format!(
                        "{} is full: it may hold {} entries and this rule would make it {}",
                        out.what,
                        out.limit,
                        out.entries.len() + entries.len()
                    ),
                )
                .with_hint("every match and every action is one entry; combine rules, or move rules into capabilities (64 entries each)");
            self.add_frame_notes(&mut d, frames);
            return Err(Box::new(d));
        }
        out.entries.extend(entries);
        out.written.extend(written);
        let (line, col) = self.sources.line_col(r.span.file, r.action_span.start);
        let via = frames
            .iter()
            .rev()
            .map(|f| {
                let (l, c) = self.sources.line_col(f.call.file, f.call.start);
                format!(
                    "macro `{}` included at {}:{l}:{c}",
                    f.name,
                    self.sources.file(f.call.file).name
                )
            })
            .collect();
        out.origins.push(Origin {
            file: self.sources.file(r.span.file).name.clone(),
            line,
            col,
            text: condense(self.sources.text(r.span)),
            via,
        });
        out.spans.push((r.action_span, frames.is_empty()));
        Ok(())
    }

    /// The rule's action, and the observer's address as written when that is not its
    /// canonical form (see [`Spellings`]).
    fn action(&self, r: &RuleAst, frames: &[Frame<'_>]) -> CResult<(Action, Option<String>)> {
        let arg = |i: usize| -> CResult<Word> {
            // Invariant: the grammar gives tee/watch two arguments and redirect one.
            let w = r.action_args.get(i).cloned().unwrap_or(Word {
                text: String::new(),
                span: r.action_span,
            });
            self.substitute(&w, frames)
        };
        let addr = |w: &Word| {
            let to =
                values::node_address(&w.text).map_err(|e| self.value_err(w.span, e, frames))?;
            let spelling = (to.to_string() != w.text).then(|| w.text.clone());
            Ok::<_, Box<Diagnostic>>((to, spelling))
        };
        Ok(match r.action {
            ActionKw::Accept => (Action::Accept, None),
            ActionKw::Drop => (Action::Drop, None),
            ActionKw::Break => (Action::Break, None),
            ActionKw::Tee | ActionKw::Watch => {
                let (l, t) = (arg(0)?, arg(1)?);
                let length =
                    values::copy_length(&l.text).map_err(|e| self.value_err(l.span, e, frames))?;
                let (to, spelling) = addr(&t)?;
                if r.action == ActionKw::Tee {
                    (Action::Tee { to, length }, spelling)
                } else {
                    (Action::Watch { to, length }, spelling)
                }
            }
            ActionKw::Redirect => {
                let (to, spelling) = addr(&arg(0)?)?;
                (Action::Redirect { to }, spelling)
            }
            ActionKw::Priority => {
                let mut d = self
                    .err(r.action_span, "`priority` is not supported")
                    .with_hint("ZeroTier reserves `priority` but neither its compiler nor skylan implements it; remove the rule");
                self.add_frame_notes(&mut d, frames);
                return Err(Box::new(d));
            }
        })
    }

    /// One match entry, and its network as written when that is not its canonical form
    /// (see [`Spellings`]).
    fn match_entry(
        &self,
        ctx: &Ctx<'_>,
        m: &MatchAst,
        frames: &[Frame<'_>],
    ) -> CResult<(Match, Option<String>)> {
        let mut not = false;
        let mut or = false;
        let mut and_seen = false;
        for (k, span) in &m.modifiers {
            match k {
                Modifier::Not if not => {
                    let mut d = self
                        .err(*span, "`not` twice before one match")
                        .with_hint("ZeroTier reads `not not X` as `not X`, which is surprising; write `not` once or not at all");
                    self.add_frame_notes(&mut d, frames);
                    return Err(Box::new(d));
                }
                Modifier::Not => not = true,
                Modifier::Or if and_seen || or => {
                    return Err(self.conflicting(*span, frames));
                }
                Modifier::Or => or = true,
                Modifier::And if or || and_seen => {
                    return Err(self.conflicting(*span, frames));
                }
                Modifier::And => and_seen = true,
            }
        }
        let args: Vec<Word> = m
            .args
            .iter()
            .map(|a| self.substitute(a, frames))
            .collect::<CResult<_>>()?;
        // The grammar gives each match its fixed number of arguments; an empty word (which
        // every value parser rejects) stands in should that ever not hold.
        let missing = Word {
            text: String::new(),
            span: m.kw_span,
        };
        let arg = |i: usize| -> &Word { args.get(i).unwrap_or(&missing) };
        let v = |w: &Word, r: Result<Condition, ValueError>| {
            r.map_err(|e| self.value_err(w.span, e, frames))
        };
        let a0 = arg(0);
        let condition = match m.keyword {
            MatchKw::ZtSrc => v(a0, values::node_address(&a0.text).map(Condition::ZtSource))?,
            MatchKw::ZtDest => v(a0, values::node_address(&a0.text).map(Condition::ZtDest))?,
            MatchKw::Vlan => v(
                a0,
                values::number(&a0.text, "a VLAN ID", 4095).map(|n| Condition::VlanId(n as u16)),
            )?,
            MatchKw::VlanPcp => v(
                a0,
                values::number(&a0.text, "a VLAN priority", 7).map(|n| Condition::VlanPcp(n as u8)),
            )?,
            MatchKw::VlanDei => v(
                a0,
                values::number(&a0.text, "a VLAN DEI bit", 1).map(|n| Condition::VlanDei(n as u8)),
            )?,
            MatchKw::EtherType => v(a0, values::ethertype(&a0.text).map(Condition::EtherType))?,
            MatchKw::MacSrc => v(a0, values::mac(&a0.text).map(Condition::MacSource))?,
            MatchKw::MacDest => v(a0, values::mac(&a0.text).map(Condition::MacDest))?,
            MatchKw::IpSrc => v(
                a0,
                values::ip_net(&a0.text).map(|n| match n {
                    IpNet::V4(n) => Condition::Ipv4Source(n),
                    IpNet::V6(n) => Condition::Ipv6Source(n),
                }),
            )?,
            MatchKw::IpDest => v(
                a0,
                values::ip_net(&a0.text).map(|n| match n {
                    IpNet::V4(n) => Condition::Ipv4Dest(n),
                    IpNet::V6(n) => Condition::Ipv6Dest(n),
                }),
            )?,
            MatchKw::IpTos => {
                let mask = values::number(&a0.text, "a TOS mask", 255)
                    .map_err(|e| self.value_err(a0.span, e, frames))?;
                let a1 = arg(1);
                let (s, e) = values::range(&a1.text, "a TOS value", 255)
                    .map_err(|e| self.value_err(a1.span, e, frames))?;
                let range = ByteRange::new(s as u8, e as u8).ok_or_else(|| {
                    self.value_err(
                        a1.span,
                        ValueError {
                            message: "bad range".into(),
                            hint: None,
                        },
                        frames,
                    )
                })?;
                Condition::IpTos {
                    mask: mask as u8,
                    range,
                }
            }
            MatchKw::IpProtocol => v(a0, values::protocol(&a0.text).map(Condition::IpProtocol))?,
            MatchKw::Icmp => {
                let t = values::number(&a0.text, "an ICMP type", 255)
                    .map_err(|e| self.value_err(a0.span, e, frames))?;
                let a1 = arg(1);
                let code =
                    values::icmp_code(&a1.text).map_err(|e| self.value_err(a1.span, e, frames))?;
                Condition::Icmp {
                    icmp_type: t as u8,
                    code,
                }
            }
            MatchKw::SPort => v(
                a0,
                values::port_range(&a0.text, "a port").map(Condition::SourcePort),
            )?,
            MatchKw::DPort => v(
                a0,
                values::port_range(&a0.text, "a port").map(Condition::DestPort),
            )?,
            MatchKw::FrameSize => v(
                a0,
                values::port_range(&a0.text, "a frame size").map(Condition::FrameSize),
            )?,
            MatchKw::Chr => v(
                a0,
                values::characteristics(&a0.text).map(Condition::Characteristics),
            )?,
            MatchKw::Random => v(a0, values::probability(&a0.text).map(Condition::Random))?,
            MatchKw::TagAssign => {
                // Invariant: the grammar requires `NAME=VALUE`.
                let (name, value) = a0.text.split_once('=').unwrap_or((&a0.text, ""));
                let name_span = Span {
                    end: a0.span.start + name.len() as u32,
                    ..a0.span
                };
                let value_span = Span {
                    start: a0.span.start + name.len() as u32 + 1,
                    ..a0.span
                };
                let (id, info) = self.tag_ref(ctx, name, name_span, frames)?;
                let value = self.tag_value(info, value, value_span, frames)?;
                Condition::Tag {
                    op: TagOp::Sender,
                    id,
                    value,
                }
            }
            kw => {
                let op = match kw {
                    MatchKw::TAnd => TagOp::BitwiseAnd,
                    MatchKw::TOr => TagOp::BitwiseOr,
                    MatchKw::TXor => TagOp::BitwiseXor,
                    MatchKw::TDiff => TagOp::Difference,
                    MatchKw::TEq => TagOp::Equal,
                    MatchKw::TSeq => TagOp::Sender,
                    _ => TagOp::Receiver,
                };
                let (id, info) = self.tag_ref(ctx, &a0.text, a0.span, frames)?;
                let a1 = arg(1);
                let value = self.tag_value(info, &a1.text, a1.span, frames)?;
                Condition::Tag { op, id, value }
            }
        };
        let spelling = match condition {
            Condition::Ipv4Source(n) | Condition::Ipv4Dest(n) => {
                Some(values::ip_spelling(&a0.text, 32)).filter(|t| *t != n.to_string())
            }
            Condition::Ipv6Source(n) | Condition::Ipv6Dest(n) => {
                Some(values::ip_spelling(&a0.text, 128)).filter(|t| *t != n.to_string())
            }
            _ => None,
        };
        Ok((Match { not, or, condition }, spelling))
    }

    fn conflicting(&self, span: Span, frames: &[Frame<'_>]) -> Box<Diagnostic> {
        let mut d = self
            .err(span, "`and` and `or` together before one match")
            .with_hint("use one of them: `and` (the default) or `or`");
        self.add_frame_notes(&mut d, frames);
        Box::new(d)
    }

    /// A tag given by name (case-insensitive) or numeric ID.
    fn tag_ref<'t>(
        &self,
        ctx: &Ctx<'t>,
        text: &str,
        span: Span,
        frames: &[Frame<'_>],
    ) -> CResult<(u32, Option<&'t TagInfo>)> {
        let lc = text.to_lowercase();
        if let Some(t) = ctx.tags.iter().find(|t| t.info.name == lc) {
            return Ok((t.info.id, Some(&t.info)));
        }
        if text.starts_with(|c: char| c.is_ascii_digit()) {
            let id = values::number(text, "a tag ID", u64::from(u32::MAX))
                .map_err(|e| self.value_err(span, e, frames))? as u32;
            let info = ctx.tags.iter().find(|t| t.info.id == id).map(|t| &t.info);
            return Ok((id, info));
        }
        let names: Vec<&str> = ctx.tags.iter().map(|t| t.info.name.as_str()).collect();
        let hint = match suggest(text, names.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None => format!("define it: `tag {text} id 1 default 0;` (or use a numeric tag ID)"),
        };
        let mut d = self
            .err(span, format!("no tag named `{text}`"))
            .with_hint(hint);
        self.add_frame_notes(&mut d, frames);
        Err(Box::new(d))
    }

    fn tag_value(
        &self,
        info: Option<&TagInfo>,
        text: &str,
        span: Span,
        frames: &[Frame<'_>],
    ) -> CResult<u32> {
        if let Some(t) = info
            && let Some(v) = t.value_of(text)
        {
            return Ok(v);
        }
        values::number(text, "a tag value", u64::from(u32::MAX))
            .map(|v| v as u32)
            .map_err(|mut e| {
                if let Some(t) = info
                    && !text.starts_with(|c: char| c.is_ascii_digit())
                {
                    e.message = format!("`{text}` is not a value of tag `{}`", t.name);
                    e.hint = Some(self.tag_value_hint(t));
                }
                self.value_err(span, e, frames)
            })
    }

    // ---- warnings ----------------------------------------------------------------------

    fn lint_table(&mut self, t: &Table, base: bool) {
        // Rules after one that always ends evaluation can never be reached.
        let mut rule_start = 0;
        let mut rule_no = 0;
        for (i, e) in t.entries.iter().enumerate() {
            let Entry::Action(a) = e else { continue };
            let unconditional = i == rule_start;
            let terminal = matches!(a, Action::Accept | Action::Drop | Action::Redirect { .. })
                || (base && matches!(a, Action::Break));
            if unconditional && terminal && rule_no + 1 < t.spans.len() {
                let (span, own) = t.spans[rule_no + 1];
                if own {
                    let (l, c) = self
                        .sources
                        .line_col(t.spans[rule_no].0.file, t.spans[rule_no].0.start);
                    let d = self.warn(span, "this rule is never reached")
                        .with_hint(format!(
                            "the rule at {}:{l}:{c} has no conditions and ends evaluation for every frame",
                            self.sources.file(t.spans[rule_no].0.file).name
                        ));
                    self.warnings.push(d);
                }
                break;
            }
            rule_start = i + 1;
            rule_no += 1;
        }
    }
}

/// Definitions visible while rendering rules.
struct Ctx<'a> {
    tags: &'a [TagEntry],
    macros: &'a HashMap<String, &'a MacroAst>,
}

impl<'a> Ctx<'a> {
    fn macro_name(&self, lc: &str) -> &'a str {
        self.macros
            .get_key_value(lc)
            .map(|(k, _)| k.as_str())
            .unwrap_or("")
    }
}

/// A table being built.
struct Table {
    entries: Vec<Entry>,
    origins: Vec<Origin>,
    /// Per rule: the action keyword's span, and whether it was written directly (not
    /// produced by a macro), for warnings.
    spans: Vec<(Span, bool)>,
    /// Values as written, by entry index (see [`Spellings`]).
    written: Vec<(usize, String)>,
    limit: usize,
    what: String,
}

impl Table {
    fn new(limit: usize, what: &str) -> Self {
        Self {
            entries: Vec::new(),
            origins: Vec::new(),
            spans: Vec::new(),
            written: Vec::new(),
            limit,
            what: what.to_string(),
        }
    }
}

/// Source text with comments removed and whitespace collapsed.
fn condense(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        let code = line.split('#').next().unwrap_or("");
        for w in code.split_whitespace() {
            if !out.is_empty() && w != ";" {
                out.push(' ');
            }
            out.push_str(w);
        }
    }
    out
}

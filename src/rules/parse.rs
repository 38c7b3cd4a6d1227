//! Source text to syntax tree: the pest grammar in `rules-grammar/rules.pest` and the
//! conversion of its parse tree into the typed syntax tree ([`Item`] and friends).
//!
//! This stage checks structure only: keywords, the number of arguments of each match and
//! action, and where blocks end. Argument values stay text (with their spans) until the
//! compiler has substituted macro parameters and can check them in context. When pest
//! rejects the input, [`syntax_error`] turns its list of expected rules into a message a
//! person can act on (missing `;`, unknown keyword with the nearest valid one, ...).
//!
//! Called only by [`super::compile`].

use pest::Parser;
use pest::iterators::Pair;

use super::error::{Diagnostic, Sources, Span, suggest};

#[derive(pest_derive::Parser)]
#[grammar = "rules-grammar/rules.pest"]
struct RulesParser;

/// A token of source with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    pub text: String,
    pub span: Span,
}

/// A top-level item.
#[derive(Debug, Clone)]
pub(crate) enum Item {
    Rule(RuleAst),
    Tag(TagAst),
    Cap(CapAst),
    Macro(MacroAst),
    IncludeFile { path: Word, span: Span },
    IncludeMacro(CallAst),
}

/// Something that may appear inside a `cap` or `macro` body.
#[derive(Debug, Clone)]
pub(crate) enum BodyItem {
    Rule(RuleAst),
    IncludeMacro(CallAst),
    IncludeFile { span: Span },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ActionKw {
    Accept,
    Drop,
    Break,
    Tee,
    Watch,
    Redirect,
    Priority,
}

#[derive(Debug, Clone)]
pub(crate) struct RuleAst {
    pub action: ActionKw,
    pub action_span: Span,
    pub action_args: Vec<Word>,
    pub matches: Vec<MatchAst>,
    /// From the action keyword to the `;`.
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Modifier {
    And,
    Or,
    Not,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MatchKw {
    ZtSrc,
    ZtDest,
    Vlan,
    VlanPcp,
    VlanDei,
    EtherType,
    MacSrc,
    MacDest,
    IpSrc,
    IpDest,
    IpTos,
    IpProtocol,
    Icmp,
    SPort,
    DPort,
    Chr,
    FrameSize,
    Random,
    TAnd,
    TOr,
    TXor,
    TDiff,
    TEq,
    TSeq,
    TReq,
    TagAssign,
}

#[derive(Debug, Clone)]
pub(crate) struct MatchAst {
    pub modifiers: Vec<(Modifier, Span)>,
    pub keyword: MatchKw,
    pub kw_span: Span,
    pub args: Vec<Word>,
}

#[derive(Debug, Clone)]
pub(crate) enum TagProp {
    Id(Word),
    Default(Span, Word),
    Enum(Word, Word),
    Flag(Word, Word),
}

#[derive(Debug, Clone)]
pub(crate) struct TagAst {
    pub name: Word,
    pub props: Vec<TagProp>,
}

#[derive(Debug, Clone)]
pub(crate) struct CapAst {
    pub name: Word,
    pub ids: Vec<(Span, Word)>,
    pub default: bool,
    pub body: Vec<BodyItem>,
}

#[derive(Debug, Clone)]
pub(crate) struct MacroAst {
    pub name: Word,
    pub params: Vec<Word>,
    pub body: Vec<BodyItem>,
}

#[derive(Debug, Clone)]
pub(crate) struct CallAst {
    pub name: Word,
    pub args: Vec<Word>,
    pub span: Span,
}

/// Parses one file of `sources` into items.
pub(crate) fn parse_file(sources: &Sources, file: u16) -> Result<Vec<Item>, Box<Diagnostic>> {
    let text = &sources.file(file).text;
    let mut pairs = RulesParser::parse(Rule::file, text)
        .map_err(|e| Box::new(syntax_error(&e, sources, file)))?;
    let b = Builder { file };
    let mut items = Vec::new();
    // Invariant: a successful parse of `file` yields exactly one `file` pair.
    let Some(root) = pairs.next() else {
        return Ok(items);
    };
    for p in root.into_inner() {
        match p.as_rule() {
            Rule::rule => items.push(Item::Rule(b.rule(p))),
            Rule::tag_def => items.push(Item::Tag(b.tag(p))),
            Rule::cap_def => items.push(Item::Cap(b.cap(p))),
            Rule::macro_def => items.push(Item::Macro(b.macro_def(p))),
            Rule::include_stmt => items.push(b.include(p)),
            _ => {}
        }
    }
    Ok(items)
}

struct Builder {
    file: u16,
}

impl Builder {
    fn span(&self, p: &Pair<'_, Rule>) -> Span {
        let s = p.as_span();
        Span {
            file: self.file,
            start: s.start() as u32,
            end: s.end() as u32,
        }
    }

    fn word(&self, p: &Pair<'_, Rule>) -> Word {
        Word {
            text: p.as_str().to_string(),
            span: self.span(p),
        }
    }

    fn rule(&self, p: Pair<'_, Rule>) -> RuleAst {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let mut action = ActionKw::Accept;
        let mut action_span = span;
        let mut action_args = Vec::new();
        let mut matches = Vec::new();
        if let Some(a) = inner.next() {
            action = match a.as_rule() {
                Rule::act_drop => ActionKw::Drop,
                Rule::act_break => ActionKw::Break,
                Rule::act_tee => ActionKw::Tee,
                Rule::act_watch => ActionKw::Watch,
                Rule::act_redirect => ActionKw::Redirect,
                Rule::act_priority => ActionKw::Priority,
                _ => ActionKw::Accept,
            };
            for c in a.into_inner() {
                if c.as_rule().is_keyword() {
                    action_span = self.span(&c);
                } else {
                    action_args.push(self.word(&c));
                }
            }
        }
        for m in inner {
            if m.as_rule() == Rule::match_term {
                matches.push(self.match_term(m));
            }
        }
        RuleAst {
            action,
            action_span,
            action_args,
            matches,
            span,
        }
    }

    fn match_term(&self, p: Pair<'_, Rule>) -> MatchAst {
        let mut modifiers = Vec::new();
        let mut keyword = MatchKw::EtherType;
        let mut kw_span = self.span(&p);
        let mut args = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::kw_and => modifiers.push((Modifier::And, self.span(&c))),
                Rule::kw_or => modifiers.push((Modifier::Or, self.span(&c))),
                Rule::kw_not => modifiers.push((Modifier::Not, self.span(&c))),
                r => {
                    keyword = match_kw(r);
                    for a in c.into_inner() {
                        if a.as_rule().is_keyword() {
                            kw_span = self.span(&a);
                        } else {
                            args.push(self.word(&a));
                        }
                    }
                }
            }
        }
        MatchAst {
            modifiers,
            keyword,
            kw_span,
            args,
        }
    }

    fn tag(&self, p: Pair<'_, Rule>) -> TagAst {
        let mut name = None;
        let mut props = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::tag_name => name = Some(self.word(&c)),
                Rule::tag_id => {
                    if let Some(v) = c.into_inner().nth(1) {
                        props.push(TagProp::Id(self.word(&v)));
                    }
                }
                Rule::tag_default => {
                    let span = self.span(&c);
                    if let Some(v) = c.into_inner().nth(1) {
                        props.push(TagProp::Default(span, self.word(&v)));
                    }
                }
                Rule::tag_enum | Rule::tag_flag => {
                    let is_enum = c.as_rule() == Rule::tag_enum;
                    let mut it = c.into_inner().skip(1);
                    if let (Some(v), Some(n)) = (it.next(), it.next()) {
                        let (v, n) = (self.word(&v), self.word(&n));
                        props.push(if is_enum {
                            TagProp::Enum(v, n)
                        } else {
                            TagProp::Flag(v, n)
                        });
                    }
                }
                _ => {}
            }
        }
        TagAst {
            name: name.unwrap_or_else(|| self.empty_word()),
            props,
        }
    }

    fn cap(&self, p: Pair<'_, Rule>) -> CapAst {
        let mut name = None;
        let mut ids = Vec::new();
        let mut default = false;
        let mut body = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::cap_name => name = Some(self.word(&c)),
                Rule::cap_id => {
                    let span = self.span(&c);
                    if let Some(v) = c.into_inner().nth(1) {
                        ids.push((span, self.word(&v)));
                    }
                }
                Rule::cap_default => default = true,
                Rule::rule => body.push(BodyItem::Rule(self.rule(c))),
                Rule::include_stmt => body.push(self.body_include(c)),
                _ => {}
            }
        }
        CapAst {
            name: name.unwrap_or_else(|| self.empty_word()),
            ids,
            default,
            body,
        }
    }

    fn macro_def(&self, p: Pair<'_, Rule>) -> MacroAst {
        let mut name = None;
        let mut params = Vec::new();
        let mut body = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::macro_name => name = Some(self.word(&c)),
                Rule::macro_params => params = c.into_inner().map(|a| self.word(&a)).collect(),
                Rule::rule => body.push(BodyItem::Rule(self.rule(c))),
                Rule::include_stmt => body.push(self.body_include(c)),
                _ => {}
            }
        }
        MacroAst {
            name: name.unwrap_or_else(|| self.empty_word()),
            params,
            body,
        }
    }

    fn include(&self, p: Pair<'_, Rule>) -> Item {
        let span = self.span(&p);
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::include_path => {
                    let mut w = self.word(&c);
                    w.text = w.text.trim_matches('"').to_string();
                    return Item::IncludeFile { path: w, span };
                }
                Rule::macro_call => return Item::IncludeMacro(self.call(c, span)),
                _ => {}
            }
        }
        Item::IncludeMacro(CallAst {
            name: self.empty_word(),
            args: Vec::new(),
            span,
        })
    }

    fn body_include(&self, p: Pair<'_, Rule>) -> BodyItem {
        match self.include(p) {
            Item::IncludeMacro(c) => BodyItem::IncludeMacro(c),
            Item::IncludeFile { span, .. } => BodyItem::IncludeFile { span },
            _ => BodyItem::IncludeFile {
                span: Span::default(),
            },
        }
    }

    fn call(&self, p: Pair<'_, Rule>, span: Span) -> CallAst {
        let mut name = self.empty_word();
        let mut args = Vec::new();
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::call_name => name = self.word(&c),
                Rule::call_args => args = c.into_inner().map(|a| self.word(&a)).collect(),
                _ => {}
            }
        }
        CallAst { name, args, span }
    }

    fn empty_word(&self) -> Word {
        Word {
            text: String::new(),
            span: Span {
                file: self.file,
                start: 0,
                end: 0,
            },
        }
    }
}

fn match_kw(r: Rule) -> MatchKw {
    match r {
        Rule::m_ztsrc => MatchKw::ZtSrc,
        Rule::m_ztdest => MatchKw::ZtDest,
        Rule::m_vlan => MatchKw::Vlan,
        Rule::m_vlanpcp => MatchKw::VlanPcp,
        Rule::m_vlandei => MatchKw::VlanDei,
        Rule::m_ethertype => MatchKw::EtherType,
        Rule::m_macsrc => MatchKw::MacSrc,
        Rule::m_macdest => MatchKw::MacDest,
        Rule::m_ipsrc => MatchKw::IpSrc,
        Rule::m_ipdest => MatchKw::IpDest,
        Rule::m_iptos => MatchKw::IpTos,
        Rule::m_ipprotocol => MatchKw::IpProtocol,
        Rule::m_icmp => MatchKw::Icmp,
        Rule::m_sport => MatchKw::SPort,
        Rule::m_dport => MatchKw::DPort,
        Rule::m_chr => MatchKw::Chr,
        Rule::m_framesize => MatchKw::FrameSize,
        Rule::m_random => MatchKw::Random,
        Rule::m_tand => MatchKw::TAnd,
        Rule::m_tor => MatchKw::TOr,
        Rule::m_txor => MatchKw::TXor,
        Rule::m_tdiff => MatchKw::TDiff,
        Rule::m_teq => MatchKw::TEq,
        Rule::m_tseq => MatchKw::TSeq,
        Rule::m_treq => MatchKw::TReq,
        _ => MatchKw::TagAssign,
    }
}

impl Rule {
    fn is_keyword(self) -> bool {
        format!("{self:?}").starts_with("kw_")
    }
}

/// Match keywords, for suggestions.
pub(crate) const MATCH_KEYWORDS: &[&str] = &[
    "ztsrc",
    "ztdest",
    "vlan",
    "vlanpcp",
    "vlandei",
    "ethertype",
    "macsrc",
    "macdest",
    "ipsrc",
    "ipdest",
    "iptos",
    "ipprotocol",
    "icmp",
    "sport",
    "dport",
    "chr",
    "framesize",
    "random",
    "tand",
    "tor",
    "txor",
    "tdiff",
    "teq",
    "tseq",
    "treq",
];

/// Words that start a top-level item.
const ITEM_KEYWORDS: &[&str] = &[
    "accept", "drop", "break", "tee", "watch", "redirect", "tag", "cap", "macro", "include",
];

const ACTION_KEYWORDS: &[&str] = &["accept", "drop", "break", "tee", "watch", "redirect"];

/// What an argument rule holds, for "expected ..." messages.
fn arg_description(r: Rule) -> Option<(&'static str, &'static str)> {
    // (what is expected, an example)
    Some(match r {
        Rule::arg_address => ("a node address (10 hex digits)", "89e92ceee5"),
        Rule::arg_length => (
            "a copy length (-1 for the whole frame, or 1-65535 bytes)",
            "-1",
        ),
        Rule::arg_vlan_id => ("a VLAN ID (0-4095)", "42"),
        Rule::arg_vlan_pcp => ("a VLAN priority (0-7)", "5"),
        Rule::arg_vlan_dei => ("a VLAN drop-eligible bit (0 or 1)", "1"),
        Rule::arg_ethertype => ("an ethertype (a number or ipv4, arp, ipv6, ...)", "ipv4"),
        Rule::arg_mac => ("a MAC address", "32:aa:bb:cc:dd:ee"),
        Rule::arg_ip => ("an IP network (address/bits)", "198.18.0.0/15"),
        Rule::arg_tos_mask => ("a TOS mask (0-255)", "0xfc"),
        Rule::arg_tos_range => ("a TOS value or range (0-255)", "0x28-0x30"),
        Rule::arg_protocol => ("an IP protocol (a number or tcp, udp, icmp, ...)", "tcp"),
        Rule::arg_icmp_type => ("an ICMP type (0-255)", "8"),
        Rule::arg_icmp_code => ("an ICMP code (0-255, or -1 for any)", "-1"),
        Rule::arg_port => ("a port or port range (0-65535)", "1024-65535"),
        Rule::arg_chr => (
            "a comma-separated list of characteristics",
            "tcp_syn,tcp_ack",
        ),
        Rule::arg_size => ("a frame size or size range (0-65535)", "0-1400"),
        Rule::arg_probability => ("a probability between 0 and 1", "0.01"),
        Rule::arg_tag => ("a tag name or tag ID", "department"),
        Rule::arg_tag_value => ("a tag value (a number, enum name or flag name)", "1"),
        Rule::arg_tag_assign => (
            "NAME=VALUE (a tag and the value the sender must have)",
            "ssh=1",
        ),
        Rule::arg_tag_id => ("a tag ID (0-4294967295)", "1000"),
        Rule::arg_tag_default => ("a default value (a number, enum or flag name)", "0"),
        Rule::arg_enum_value => ("an enum value (0-4294967295)", "100"),
        Rule::arg_flag_bits => ("bit numbers 0-31 (comma-separated)", "0,1"),
        Rule::arg_cap_id => ("a capability ID (0-4294967295)", "1000"),
        Rule::tag_name | Rule::cap_name | Rule::macro_name | Rule::call_name => {
            ("a name (letters, digits, `_`)", "servers")
        }
        Rule::enum_name | Rule::flag_name => ("a name (letters, digits, `_`)", "sales"),
        Rule::include_path => ("a quoted file name", "\"common.rules\""),
        Rule::macro_param => ("a parameter name starting with `$`", "$port"),
        Rule::call_arg => ("a macro argument", "22"),
        _ => return None,
    })
}

/// The last `n` tokens before byte `pos`, nearest first, as `(offset, text)`. Comments
/// are skipped and `;` is a token of its own.
fn previous_words(text: &str, pos: usize, n: usize) -> Vec<(usize, &str)> {
    tokens_before(text, pos).into_iter().rev().take(n).collect()
}

/// All tokens before byte `pos`, in order.
fn tokens_before(text: &str, pos: usize) -> Vec<(usize, &str)> {
    let before = text.get(..pos.min(text.len())).unwrap_or("");
    let mut toks: Vec<(usize, &str)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut in_comment = false;
    for (i, c) in before.char_indices() {
        if in_comment {
            in_comment = c != '\n';
            continue;
        }
        let boundary = c.is_whitespace() || c == ';' || c == '#';
        if boundary {
            if let Some(s) = start.take() {
                toks.push((s, &before[s..i]));
            }
            if c == ';' {
                toks.push((i, ";"));
            }
            in_comment = c == '#';
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        toks.push((s, &before[s..]));
    }
    toks
}

/// The last `cap` or `macro` keyword before `pos` (the block that is still open), with
/// the name after it.
fn open_block(text: &str, pos: usize, kw: &str) -> Option<(usize, String)> {
    let toks = tokens_before(text, pos);
    let i = toks.iter().rposition(|(_, t)| t.eq_ignore_ascii_case(kw))?;
    let name = toks
        .get(i + 1)
        .map(|(_, n)| n.split('(').next().unwrap_or("").to_string())
        .unwrap_or_default();
    Some((toks[i].0, name))
}

/// The token at `pos`: the text up to the next whitespace, `;` or `#`.
fn token_at(text: &str, pos: usize) -> &str {
    let rest = text.get(pos..).unwrap_or("");
    if rest.starts_with(';') {
        return ";";
    }
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ';' || c == '#')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// Turns a pest failure into a diagnostic with a message and, when we can tell, a hint.
fn syntax_error(e: &pest::error::Error<Rule>, sources: &Sources, file: u16) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let text = &sources.file(file).text;
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let positives: Vec<Rule> = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => positives.clone(),
        ErrorVariant::CustomError { .. } => Vec::new(),
    };
    let found = token_at(text, pos);
    let at_eof = found.is_empty() && text[pos.min(text.len())..].trim().is_empty();
    let found_lc = found.to_lowercase();
    let span_found = Span {
        file,
        start: pos as u32,
        end: (pos + found.len().max(1)).min(text.len().max(pos)) as u32,
    };
    let expects = |r: Rule| positives.contains(&r);
    // Where the parser was, judged from what it would have accepted.
    let expects_match = expects(Rule::match_term) || expects(Rule::kw_dport);
    let in_tag = expects(Rule::kw_enum);
    let in_cap = expects(Rule::kw_id) && !in_tag;
    let top_level = expects(Rule::file) || expects(Rule::kw_tag) || expects(Rule::EOI);
    let in_macro = expects(Rule::kw_include) && !top_level && !in_cap;
    let expects_semi = expects(Rule::semi);

    // Span just after the previous token, for "missing `;`" messages.
    let prev = previous_words(text, pos, 6);
    let after_prev = prev
        .first()
        .map(|(s, w)| Span {
            file,
            start: (s + w.len()) as u32,
            end: (s + w.len()) as u32 + 1,
        })
        .unwrap_or(span_found);
    let got = if at_eof {
        "the end of the file".to_string()
    } else if found == ";" {
        "`;`".to_string()
    } else {
        format!("`{found}`")
    };

    // An argument is missing or malformed at the grammar level.
    if let Some(arg_rule) = positives
        .iter()
        .copied()
        .find(|r| arg_description(*r).is_some())
    {
        let (what, example) = arg_description(arg_rule).unwrap_or(("an argument", ""));
        if arg_rule == Rule::arg_tag_assign && !found.is_empty() && !found.contains('=') {
            let d = sources.error(after_prev, "missing `;` before `tag`");
            return d.with_hint(
                "`tag` inside a rule tests the sender's tag (`tag ssh=1`); a tag definition must come after the rule's closing `;`",
            );
        }
        let owner = prev
            .iter()
            .map(|(_, w)| w.to_lowercase())
            .find(|w| is_argument_owner(w))
            .map(|w| format!("`{w}` "))
            .unwrap_or_default();
        let mut d = sources.error(span_found, format!("{owner}needs {what}, found {got}"));
        if !example.is_empty() {
            d = d.with_hint(format!("for example `{example}`"));
        }
        return d;
    }

    // `and`, `or` or `not` with no match after it (ZeroTier ignores it; it is a slip).
    let last_word = prev
        .first()
        .map(|(_, w)| w.to_lowercase())
        .unwrap_or_default();
    if (at_eof || found == ";") && ["and", "or", "not"].contains(&last_word.as_str()) {
        let (at, w) = prev[0];
        let span = Span {
            file,
            start: at as u32,
            end: (at + w.len()) as u32,
        };
        return sources
            .error(span, format!("`{w}` is not followed by a match"))
            .with_hint(format!(
                "add the match it was meant for, or remove `{w}` (ZeroTier's compiler ignores it silently)"
            ));
    }

    if expects(Rule::macro_params) {
        return sources
            .error(span_found, "malformed macro parameter list")
            .with_hint("write the parameters in parentheses, each starting with `$`: `macro allow($port,$proto)`");
    }

    // A new statement (or the end of the file) where the current one should have ended.
    let new_statement = at_eof || ITEM_KEYWORDS.contains(&found_lc.as_str());
    if expects_semi && new_statement {
        let before = if at_eof {
            "at the end of the file".to_string()
        } else {
            format!("before `{found}`")
        };
        // An unclosed `cap` or `macro`: point at where it starts.
        let block = if in_cap {
            Some("cap")
        } else if in_macro {
            Some("macro")
        } else {
            None
        };
        if let Some(kw) = block {
            let hint = format!(
                "a `{kw}` block ends with a `;` of its own after its last rule, e.g. `{kw} name{} accept; ;`",
                if kw == "cap" { " id 1" } else { "" }
            );
            if let Some((at, name)) = open_block(text, pos, kw) {
                let opener = Span {
                    file,
                    start: at as u32,
                    end: (at + kw.len()) as u32,
                };
                let msg = format!("the `{kw}` block `{name}` is not closed {before}");
                let mut d = sources.error(opener, msg).with_hint(hint);
                if !at_eof {
                    let (l, c) = sources.line_col(file, pos as u32);
                    d.notes
                        .push(format!("`{found}` at {l}:{c} cannot be part of the block"));
                }
                return d;
            }
            return sources
                .error(
                    span_found,
                    format!("missing `;` to close the `{kw}` block {before}"),
                )
                .with_hint(hint);
        }
        let (msg, span, hint) = if in_tag {
            (
                format!("missing `;` at the end of the tag definition {before}"),
                after_prev,
                "end a tag definition with `;`: `tag name id 1 default 0;`",
            )
        } else {
            (
                format!("missing `;` {before}"),
                after_prev,
                "every rule ends with `;`, for example `accept ethertype arp;`",
            )
        };
        return sources.error(span, msg).with_hint(hint);
    }
    if at_eof {
        return sources.error(span_found, "unexpected end of file");
    }

    if expects_match {
        // Old syntax `dport 80 80`: a second argument.
        let kw = prev
            .get(1)
            .map(|(_, w)| w.to_lowercase())
            .unwrap_or_default();
        let first = prev.first().map(|(_, w)| *w).unwrap_or("");
        if ["dport", "sport", "framesize"].contains(&kw.as_str())
            && found
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '$')
        {
            return sources
                .error(
                    span_found,
                    format!("`{kw}` takes one argument, found a second one `{found}`"),
                )
                .with_hint(format!(
                    "write a range as one token, `{kw} {first}-{found}`, or match either value with `{kw} {first} or {kw} {found}`"
                ));
        }
        if !found.chars().next().is_some_and(char::is_alphabetic) {
            return sources
                .error(
                    span_found,
                    format!("unexpected {got} where a match or `;` was expected"),
                )
                .with_hint("each match takes a fixed number of arguments; end the rule with `;`");
        }
        let hint = match suggest(
            found,
            MATCH_KEYWORDS.iter().copied().chain(["and", "or", "not"]),
        ) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "matches are words like `ethertype`, `ipprotocol`, `dport`, `chr`, `tseq`; end the rule with `;`".to_string(),
        };
        return sources
            .error(span_found, format!("unknown match `{found}`"))
            .with_hint(hint);
    }

    if in_tag {
        let hint = match suggest(found, ["id", "default", "enum", "flag"]) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "a tag definition holds `id N`, `default V`, `enum N NAME` and `flag BITS NAME`, and ends with `;`".to_string(),
        };
        return sources
            .error(span_found, format!("unexpected {got} in a tag definition"))
            .with_hint(hint);
    }

    if MATCH_KEYWORDS.contains(&found_lc.as_str()) {
        return sources
            .error(
                span_found,
                format!("a rule must start with an action, found the match `{found}`"),
            )
            .with_hint(format!(
                "put an action first, for example `accept {found} ...;` (actions: accept, drop, break, tee, watch, redirect)"
            ));
    }
    let (context, cands): (&str, Vec<&str>) = if in_cap {
        (
            " in a `cap` block",
            ACTION_KEYWORDS
                .iter()
                .copied()
                .chain(["id", "default", "include"])
                .collect(),
        )
    } else if in_macro {
        (
            " in a `macro` block",
            ACTION_KEYWORDS.iter().copied().chain(["include"]).collect(),
        )
    } else {
        ("", ITEM_KEYWORDS.to_vec())
    };
    let hint = match suggest(found, cands) {
        Some(s) => format!("did you mean `{s}`?"),
        None if in_cap => {
            "a `cap` block holds `id N`, `default` and rules, and ends with `;`".to_string()
        }
        None => "statements start with an action (accept, drop, break, tee, watch, redirect) or with `tag`, `cap`, `macro` or `include`".to_string(),
    };
    let what = if found.chars().next().is_some_and(char::is_alphabetic) {
        format!("unknown keyword `{found}`{context}")
    } else {
        format!("unexpected {got}{context}")
    };
    sources.error(span_found, what).with_hint(hint)
}

/// Words after which an argument follows.
fn is_argument_owner(w: &str) -> bool {
    MATCH_KEYWORDS.contains(&w)
        || [
            "tee", "watch", "redirect", "tag", "cap", "macro", "include", "id", "default", "enum",
            "flag",
        ]
        .contains(&w)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<Vec<Item>, Box<Diagnostic>> {
        let mut s = Sources::default();
        let f = s.add("t.rules".into(), src.into());
        parse_file(&s, f)
    }

    fn err(src: &str) -> Diagnostic {
        *parse(src).expect_err("should not parse")
    }

    #[test]
    fn parses_zerotier_shapes() {
        let items = parse(
            "# comment\ndrop\n  not ethertype ipv4 # v4\n  and not ethertype arp\n  or not chr ipauth\n;\n\
             tag department id 1000 enum 100 sales flag 0,1 both default sales;\n\
             cap superuser id 1000 default accept; ;\n\
             macro allow($port) accept ipprotocol tcp dport $port; ;\n\
             include allow(22)\ninclude \"more.rules\";\naccept;drop;",
        )
        .unwrap();
        assert_eq!(items.len(), 8);
        let Item::Rule(r) = &items[0] else {
            panic!("rule expected")
        };
        assert_eq!(r.action, ActionKw::Drop);
        assert_eq!(r.matches.len(), 3);
        assert_eq!(r.matches[2].modifiers.len(), 2);
        assert_eq!(r.matches[2].keyword, MatchKw::Chr);
        assert_eq!(r.matches[2].args[0].text, "ipauth");
        let Item::Tag(t) = &items[1] else {
            panic!("tag expected")
        };
        assert_eq!(t.name.text, "department");
        assert_eq!(t.props.len(), 4);
        let Item::Cap(c) = &items[2] else {
            panic!("cap expected")
        };
        assert!(c.default);
        assert_eq!(c.body.len(), 1);
        let Item::Macro(m) = &items[3] else {
            panic!("macro expected")
        };
        assert_eq!(m.params[0].text, "$port");
        let Item::IncludeMacro(call) = &items[4] else {
            panic!("include expected")
        };
        assert_eq!(call.args[0].text, "22");
        assert!(matches!(&items[5], Item::IncludeFile { path, .. } if path.text == "more.rules"));
    }

    #[test]
    fn keywords_are_case_insensitive_and_need_a_boundary() {
        let items = parse("ACCEPT EtherType IPv4;").unwrap();
        assert_eq!(items.len(), 1);
        assert!(parse("acceptx;").is_err());
    }

    #[test]
    fn missing_semicolon_points_after_the_previous_token() {
        let d = err("accept ethertype arp\naccept;\n");
        assert_eq!(d.message, "missing `;` before `accept`");
        assert_eq!((d.line, d.col), (1, 21));
        assert!(d.hint.unwrap().contains("ends with `;`"));
    }

    #[test]
    fn the_last_rule_or_tag_may_leave_out_its_semicolon() {
        // ZeroTier's compiler accepts a file that ends without the last `;`.
        for src in [
            "accept ethertype arp",
            "accept ethertype arp;\ndrop",
            "accept ethertype arp;\ndrop dport 22  # last\n",
            "tee 0 89e92ceee5",
            "accept;\ntag t id 1 default 0\n",
        ] {
            let items = parse(src).unwrap_or_else(|d| panic!("{src:?}: {d}"));
            assert!(!items.is_empty(), "{src:?}");
        }
        let items = parse("accept ethertype arp;\ndrop").unwrap();
        assert!(matches!(&items[1], Item::Rule(r) if r.action == ActionKw::Drop));
        // Blocks still need their own `;`, and only the end of the file ends a rule.
        let d = err("cap c id 1 accept dport 22");
        assert_eq!(
            d.message,
            "the `cap` block `c` is not closed at the end of the file"
        );
        assert!(
            err("accept ethertype arp\naccept;")
                .message
                .contains("missing `;`")
        );
    }

    #[test]
    fn trailing_connectives_are_refused() {
        // ZeroTier ignores a `not` or `and` with no match after it; it is a mistake.
        for (src, word) in [
            ("accept dport 22 and;", "and"),
            ("accept dport 22 not ;", "not"),
            ("accept dport 22 or", "or"),
        ] {
            let d = err(src);
            assert_eq!(d.message, format!("`{word}` is not followed by a match"));
            assert_eq!((d.line, d.col), (1, 17), "{src:?}");
        }
    }

    #[test]
    fn unknown_match_suggests_nearest() {
        let d = err("accept ethertype arp and dprot 22;");
        assert_eq!(d.message, "unknown match `dprot`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `dport`?"));
        assert_eq!((d.line, d.col, d.caret_len), (1, 26, 5));
    }

    #[test]
    fn unknown_action_suggests_nearest() {
        let d = err("acept;");
        assert_eq!(d.message, "unknown keyword `acept`");
        assert_eq!(d.hint.as_deref(), Some("did you mean `accept`?"));
        let d = err("ethertype arp;");
        assert!(d.message.contains("must start with an action"), "{d}");
    }

    #[test]
    fn missing_argument_names_what_was_expected() {
        let d = err("accept dport;");
        assert_eq!(
            d.message,
            "`dport` needs a port or port range (0-65535), found `;`"
        );
        let d = err("accept icmp 8;");
        assert_eq!(
            d.message,
            "`icmp` needs an ICMP code (0-255, or -1 for any), found `;`"
        );
        let d = err("tee 0;");
        assert!(
            d.message.contains("copy length") || d.message.contains("node address"),
            "{d}"
        );
    }

    #[test]
    fn old_two_argument_port_syntax_gets_a_hint() {
        let d = err("accept dport 80 80;");
        assert_eq!(
            d.message,
            "`dport` takes one argument, found a second one `80`"
        );
        assert!(d.hint.unwrap().contains("80-80"));
    }

    #[test]
    fn unclosed_blocks_are_named() {
        let d = err("cap x id 1 accept;\naccept;");
        assert!(
            d.message.contains("end of file") || d.message.contains("`cap` block"),
            "{d}"
        );
        let d = err("cap x id 1 accept;\ntag y id 2;\n");
        assert_eq!(d.message, "the `cap` block `x` is not closed before `tag`");
        assert_eq!((d.line, d.col), (1, 1));
        assert_eq!(
            d.notes,
            vec!["`tag` at 2:1 cannot be part of the block".to_string()]
        );
        let d = err("macro m\n  include a(1)\n");
        assert_eq!(
            d.message,
            "the `macro` block `m` is not closed at the end of the file"
        );
        let d = err("tag x id 1 enum 1 a\naccept;");
        assert!(d.message.contains("tag definition"), "{d}");
        let d = err("tag x idd 1;");
        assert_eq!(d.hint.as_deref(), Some("did you mean `id`?"));
    }

    #[test]
    fn tag_inside_a_rule_needs_name_value() {
        assert!(parse("accept tag ssh=1;").is_ok());
        let d = err("accept ethertype arp\ntag x id 1;");
        assert_eq!(d.message, "missing `;` before `tag`");
    }
}

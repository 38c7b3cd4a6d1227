//! `skylan rules check | compile | explain`: the rules language offline.
//!
//! This is the thin file-system edge of [`crate::rules`]: it reads the rules file (and the
//! files it includes, relative to the including file), calls the compiler and the
//! evaluator, and returns the text to print. It never prints and never exits: `main.rs`
//! prints `Ok` text to stdout, and an `Err` to stderr with exit status 1 (clap handles
//! usage errors with status 2).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::rules::describe::{TagsSpec, frame_from_description, parse_capabilities, parse_tags};
use crate::rules::explain::{self, Sources, describe_decider, describe_tags, summarize_frame};
use crate::rules::{
    Compiled, Decision, Direction, Entry, FrameContext, LoadedSource, MAX_BASE_ENTRIES,
    MAX_CAPABILITY_ENTRIES, MAX_SOURCE_BYTES, PeerTags, RuleSet, RulesError, SourceLoader, Verdict,
    compile, render_rule, rules_of,
};
use crate::types::NodeAddress;

const EXPLAIN_HELP: &str = "\
FRAME DESCRIPTIONS (--frame)
  Words, in any order (commas count as spaces):
    tcp | udp | sctp | udplite | icmp | icmp6 | arp    the protocol (default tcp)
    proto N | ethertype N                              another IP protocol / a raw ethertype
    ipv4 | ipv6                                        the IP version, if the addresses do not tell
    from ADDR   to ADDR                                198.18.0.2, 198.18.0.2:40000, fd00::1, [fd00::1]:22
    syn ack fin rst psh urg ece cwr ns                 TCP flags (also: flags syn,ack)
    type N  code N  echo-request  echo-reply           ICMP
    request | reply                                    ARP operation (default request, to broadcast)
    vlan N  pcp N  dei                                 an 802.1Q tag
    tos N | dscp N                                     IPv4 TOS / IPv6 traffic class
    size N                                             pad the Ethernet payload to N bytes
    macsrc MAC  macdest MAC                            MACs (multicast/broadcast IPs get group MACs)
    noipauth  nomacauth                                the sender does not own its source IP / MAC
    with                                               ignored, for readability
  Defaults: 198.18.0.1:49152 -> 198.18.0.2:80, ICMP echo request.

TAGS (--sender-tags, --receiver-tags) and CAPABILITIES (--caps)
  Tags: name=value,... with tag names or IDs and values as numbers, enum names, or flag
  names joined by | (perm=read|write); `none` for no tags.
  Capabilities: names or IDs separated by commas.

EXAMPLES
  skylan rules explain net.rules --frame 'tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn' \\
      --sender-tags role=admin --receiver-tags role=server
  skylan rules explain net.rules --frame 'arp from 198.18.0.2 to 198.18.0.3' --side receiver
  skylan rules explain net.rules --frame 'udp to [ff02::fb]:5353' --ztdest none";

/// The `skylan rules` subcommands.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RulesCommand {
    /// Check a rules file: report errors as FILE:LINE:COL with the offending line, and
    /// warnings about rules that probably do not do what was meant.
    Check {
        /// The rules file (ZeroTier's rules language; `include "other.rules"` is
        /// resolved relative to it).
        file: PathBuf,
    },
    /// Compile a rules file and print its rule table.
    Compile {
        /// The rules file.
        file: PathBuf,
        /// Print ZeroTier's compiled-rule JSON (the controller's `rules`,
        /// `capabilities` and `tags`, plus `tagsByName` and `capabilitiesByName`).
        #[arg(short = 'j', long = "json")]
        json: bool,
    },
    /// Evaluate a described frame against a rules file, on the sender and on the
    /// receiver, and show the verdict, the rule that decided it and why.
    #[command(after_long_help = EXPLAIN_HELP)]
    Explain {
        /// The rules file.
        file: PathBuf,
        /// The frame, e.g. 'tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn' (see below).
        #[arg(long, value_name = "DESCRIPTION")]
        frame: String,
        /// The sender's tags, e.g. 'role=admin,dept=sales'.
        #[arg(long, value_name = "TAGS", default_value = "none")]
        sender_tags: String,
        /// The receiver's tags.
        #[arg(long, value_name = "TAGS", default_value = "none")]
        receiver_tags: String,
        /// Capabilities the sender holds, e.g. 'ssh,superuser'.
        #[arg(long, value_name = "CAPS", default_value = "none")]
        caps: String,
        /// The sending node's address.
        #[arg(long, value_name = "ADDRESS", default_value = "1111111111")]
        ztsrc: NodeAddress,
        /// The receiving node's address, or `none` for a multicast frame filtered before
        /// its recipients are known.
        #[arg(long, value_name = "ADDRESS", default_value = "2222222222")]
        ztdest: String,
        /// The sender has not learned the receiver's tags yet (the sender then defers
        /// rules that depend on them to the receiver).
        #[arg(long)]
        unknown_receiver_tags: bool,
        /// The receiver has not learned the sender's tags (it then treats the sender as
        /// holding none).
        #[arg(long)]
        unknown_sender_tags: bool,
        /// Which side to evaluate.
        #[arg(long, value_enum, default_value_t = Side::Both)]
        side: Side,
        /// The random input for `random` matches.
        #[arg(long, default_value_t = 0)]
        random: u32,
    },
}

/// Which side(s) `explain` evaluates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Side {
    /// The sender (outbound) and then the receiver (inbound).
    Both,
    /// Only the sender.
    Sender,
    /// Only the receiver.
    Receiver,
}

/// Why a `skylan rules` command failed; `Display` is the full message for stderr.
#[derive(Debug, thiserror::Error)]
pub enum RulesCliError {
    /// The rules file could not be read.
    #[error("cannot read {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The rules do not compile, or a description does not parse.
    #[error("{0}")]
    Rules(#[from] RulesError),
    /// Bad command-line value.
    #[error("{0}")]
    Usage(String),
}

/// Runs one `skylan rules` command and returns what to print on stdout.
pub fn run(cmd: RulesCommand) -> Result<String, RulesCliError> {
    match cmd {
        RulesCommand::Check { file } => {
            let c = load(&file)?;
            let mut out = String::new();
            for w in &c.warnings {
                let _ = writeln!(out, "{w}\n");
            }
            let _ = writeln!(out, "{}: ok, {}", file.display(), summary(&c));
            Ok(out)
        }
        RulesCommand::Compile { file, json } => {
            let c = load(&file)?;
            if json {
                return Ok(c.to_json_pretty() + "\n");
            }
            Ok(table_text(&file, &c))
        }
        RulesCommand::Explain {
            file,
            frame,
            sender_tags,
            receiver_tags,
            caps,
            ztsrc,
            ztdest,
            unknown_receiver_tags,
            unknown_sender_tags,
            side,
            random,
        } => {
            let c = load(&file)?;
            let ztdest = if ztdest.eq_ignore_ascii_case("none") {
                None
            } else {
                Some(ztdest.parse::<NodeAddress>().map_err(|e| {
                    RulesCliError::Usage(format!("--ztdest: {e} (or `none` for multicast)"))
                })?)
            };
            let f = frame_from_description(&frame)?;
            let tags = |t: &str| -> Result<Vec<(u32, u32)>, RulesCliError> {
                match parse_tags(t, &c.names)? {
                    TagsSpec::Known(v) => Ok(v),
                    TagsSpec::Unknown => Err(RulesCliError::Usage(
                        "tags cannot be `unknown` here; give the member's real tags and add --unknown-receiver-tags or --unknown-sender-tags".into(),
                    )),
                }
            };
            let s_tags = tags(&sender_tags)?;
            let r_tags = tags(&receiver_tags)?;
            let caps = parse_capabilities(&caps, &c.names)?;
            let input = ExplainInput {
                frame: &f.frame,
                ztsrc,
                ztdest,
                sender_tags: &s_tags,
                receiver_tags: &r_tags,
                unknown_receiver_tags,
                unknown_sender_tags,
                caps: &caps,
                ip_authenticated: f.ip_authenticated,
                mac_authenticated: f.mac_authenticated,
                random,
            };
            Ok(explain_text(&c, &input, side))
        }
    }
}

/// Reads a rules file and the files it includes.
struct FsLoader;

impl SourceLoader for FsLoader {
    fn load(&mut self, from: &str, path: &str) -> Result<LoadedSource, String> {
        let base = Path::new(from).parent().unwrap_or(Path::new(""));
        let p = normalize(&base.join(path));
        let name = p.display().to_string();
        let text =
            read_limited(&p).map_err(|e| format!("cannot include \"{path}\" ({name}): {e}"))?;
        Ok(LoadedSource { name, text })
    }
}

/// Removes `.` and `a/..` components so one file has one name (for cycle detection).
fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Reads a rules file: a regular UTF-8 file of at most `MAX_SOURCE_BYTES`.
pub(crate) fn read_limited(p: &Path) -> Result<String, String> {
    let meta = std::fs::metadata(p).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    if meta.len() > MAX_SOURCE_BYTES as u64 {
        return Err(format!(
            "{} bytes; rules files may be at most {MAX_SOURCE_BYTES} bytes",
            meta.len()
        ));
    }
    let bytes = std::fs::read(p).map_err(|e| e.to_string())?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        )
    })
}

fn load(file: &Path) -> Result<Compiled, RulesCliError> {
    let name = file.display().to_string();
    let text = read_limited(file).map_err(|reason| RulesCliError::Read {
        path: name.clone(),
        reason,
    })?;
    Ok(compile(&name, &text, &mut FsLoader)?)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn summary(c: &Compiled) -> String {
    let caps: usize = c.rules.capabilities().len();
    let cap_rules: usize = c
        .rules
        .capabilities()
        .iter()
        .map(|k| crate::rules::rule_count(k.entries()))
        .sum();
    let mut s = format!(
        "{} ({} of {MAX_BASE_ENTRIES} entries), {}",
        plural(c.rules.rule_count(), "rule", "rules"),
        c.rules.entries().len(),
        plural(caps, "capability", "capabilities"),
    );
    if caps > 0 {
        let _ = write!(s, " ({})", plural(cap_rules, "rule", "rules"));
    }
    let _ = write!(s, ", {}", plural(c.rules.tags().len(), "tag", "tags"));
    if !c.warnings.is_empty() {
        let _ = write!(s, ", {}", plural(c.warnings.len(), "warning", "warnings"));
    }
    s
}

/// The human form of `compile`: every rule with its source location and its entries.
fn table_text(file: &Path, c: &Compiled) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {}", file.display(), summary(c));
    let section =
        |out: &mut String, title: String, entries: &[Entry], origins: &[crate::rules::Origin]| {
            let _ = writeln!(out, "\n{title}");
            if entries.is_empty() {
                let _ = writeln!(out, "  (no rules)");
            }
            for (n, (start, rule)) in rules_of(entries).enumerate() {
                let at = origins.get(n).map(|o| format!("  {o}")).unwrap_or_default();
                let _ = writeln!(out, "  rule {n}{at}");
                let _ = writeln!(out, "    {}", render_rule(rule, Some(&c.names)));
                for (i, e) in rule.iter().enumerate() {
                    let _ = writeln!(out, "    {:>5}  {}", start + i, entry_text(e));
                }
            }
        };
    section(
        &mut out,
        format!(
            "base rules ({} of {MAX_BASE_ENTRIES} entries):",
            c.rules.entries().len()
        ),
        c.rules.entries(),
        &c.origins.base,
    );
    for (i, cap) in c.rules.capabilities().iter().enumerate() {
        let name = c
            .names
            .capability_by_id(cap.id)
            .map(|n| n.name.clone())
            .unwrap_or_default();
        let title = format!(
            "capability {name} (id {}{}; {} of {MAX_CAPABILITY_ENTRIES} entries):",
            cap.id,
            if cap.default { ", default" } else { "" },
            cap.entries().len()
        );
        let origins = c
            .origins
            .capabilities
            .get(i)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        section(&mut out, title, cap.entries(), origins);
    }
    if !c.names.tags.is_empty() {
        let _ = writeln!(out, "\ntags:");
        for t in &c.names.tags {
            let _ = write!(
                out,
                "  {} id {} default {}",
                t.name,
                t.id,
                t.default.map(|d| d.to_string()).unwrap_or("none".into())
            );
            for (n, v) in &t.enums {
                let _ = write!(out, ", enum {n}={v}");
            }
            for (n, v) in &t.flags {
                let _ = write!(out, ", flag {n}=0x{v:x}");
            }
            out.push('\n');
        }
    }
    for w in &c.warnings {
        let _ = writeln!(out, "\n{w}");
    }
    out
}

/// One entry as `TYPE [not] [or] field=value ...`.
fn entry_text(e: &Entry) -> String {
    let (ty, not, or, fields) = crate::rules::json::entry_fields(e);
    let mut s = format!("{ty:<30}");
    if not {
        s.push_str(" not");
    }
    if or {
        s.push_str(" or");
    }
    for (k, val) in fields {
        let _ = write!(s, " {k}={val}");
    }
    s.trim_end().to_string()
}

struct ExplainInput<'a> {
    frame: &'a [u8],
    ztsrc: NodeAddress,
    ztdest: Option<NodeAddress>,
    sender_tags: &'a [(u32, u32)],
    receiver_tags: &'a [(u32, u32)],
    unknown_receiver_tags: bool,
    unknown_sender_tags: bool,
    caps: &'a [u32],
    ip_authenticated: bool,
    mac_authenticated: bool,
    random: u32,
}

impl<'a> ExplainInput<'a> {
    fn context(&self, direction: Direction) -> FrameContext<'a> {
        let (sender_tags, receiver_tags) = match direction {
            Direction::Outbound => (
                PeerTags::Known(self.sender_tags),
                if self.unknown_receiver_tags {
                    PeerTags::Unknown
                } else {
                    PeerTags::Known(self.receiver_tags)
                },
            ),
            Direction::Inbound => (
                if self.unknown_sender_tags {
                    PeerTags::Unknown
                } else {
                    PeerTags::Known(self.sender_tags)
                },
                PeerTags::Known(self.receiver_tags),
            ),
        };
        FrameContext {
            direction,
            ztsrc: self.ztsrc,
            ztdest: self.ztdest,
            frame: self.frame,
            sender_tags,
            receiver_tags,
            sender_capabilities: self.caps,
            ip_authenticated: self.ip_authenticated,
            mac_authenticated: self.mac_authenticated,
            random: self.random,
        }
    }
}

fn explain_text(c: &Compiled, input: &ExplainInput<'_>, side: Side) -> String {
    let src = Sources {
        origins: Some(&c.origins),
        names: Some(&c.names),
    };
    let mut out = String::new();
    let caps: Vec<String> = input
        .caps
        .iter()
        .map(|id| match c.names.capability_by_id(*id) {
            Some(n) => n.name.clone(),
            None => id.to_string(),
        })
        .collect();
    let _ = writeln!(out, "frame:    {}", summarize_frame(input.frame));
    let _ = writeln!(
        out,
        "sender:   {}, tags: {}, capabilities: {}",
        input.ztsrc,
        describe_tags(PeerTags::Known(input.sender_tags), Some(&c.names)),
        if caps.is_empty() {
            "none".into()
        } else {
            caps.join(", ")
        }
    );
    let _ = writeln!(
        out,
        "receiver: {}, tags: {}",
        input
            .ztdest
            .map(|d| d.to_string())
            .unwrap_or_else(|| "none (multicast, before recipients are known)".into()),
        describe_tags(PeerTags::Known(input.receiver_tags), Some(&c.names)),
    );
    let run_side = |out: &mut String, direction: Direction| -> Decision {
        let ctx = input.context(direction);
        let ex = explain::explain(&c.rules, &ctx);
        let title = match direction {
            Direction::Outbound => "on the sender (outbound)",
            Direction::Inbound => "on the receiver (inbound)",
        };
        let _ = writeln!(out, "\n== {title} ==");
        out.push_str(&explain::render_report(&c.rules, &ctx, &ex, src));
        ex.decision
    };
    let sender =
        matches!(side, Side::Both | Side::Sender).then(|| run_side(&mut out, Direction::Outbound));
    let receiver =
        matches!(side, Side::Both | Side::Receiver).then(|| run_side(&mut out, Direction::Inbound));
    let _ = writeln!(
        out,
        "\nresult: {}",
        result_text(&c.rules, sender, receiver, src)
    );
    out
}

fn result_text(
    rules: &RuleSet,
    sender: Option<Decision>,
    receiver: Option<Decision>,
    src: Sources<'_>,
) -> String {
    let at = |d: &Decision| {
        describe_decider(rules, d, src)
            .lines()
            .next()
            .unwrap_or("")
            .to_string()
    };
    if let Some(s) = sender {
        match s.verdict {
            Verdict::Drop => return format!("DROPPED by the sender: {}", at(&s)),
            Verdict::Redirect { to } => {
                return format!(
                    "REDIRECTED by the sender to {to} ({}); run again with --ztdest {to} to see how {to} treats it",
                    at(&s)
                );
            }
            Verdict::Accept => {}
        }
    }
    match (sender, receiver) {
        (_, Some(r)) => match r.verdict {
            Verdict::Drop => format!("DROPPED by the receiver: {}", at(&r)),
            Verdict::Redirect { to } => {
                format!("REDIRECTED by the receiver to {to} ({})", at(&r))
            }
            Verdict::Accept if sender.is_some() => {
                "DELIVERED: the sender sends it and the receiver accepts it".into()
            }
            Verdict::Accept => format!("ACCEPTED by the receiver: {}", at(&r)),
        },
        (Some(s), None) if s.deferred => {
            "SENT: the sender defers to the receiver (its decision depends on the receiver's tags)"
                .into()
        }
        (Some(s), None) => format!("SENT by the sender: {}", at(&s)),
        (None, None) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn check_reports_ok_and_warnings() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "a.rules", "drop;\naccept;\n");
        let out = run(RulesCommand::Check { file: f.clone() }).unwrap();
        assert!(out.contains("warning: this rule is never reached"), "{out}");
        assert!(
            out.ends_with(&format!(
                "{}: ok, 2 rules (2 of 1024 entries), 0 capabilities, 0 tags, 1 warning\n",
                f.display()
            )),
            "{out}"
        );
    }

    #[test]
    fn check_fails_with_a_located_error() {
        let d = tempfile::tempdir().unwrap();
        let f = write(d.path(), "bad.rules", "accept ethertype arp\naccept;\n");
        let e = run(RulesCommand::Check { file: f.clone() }).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "{}:1:21: error: missing `;` before `accept`",
                f.display()
            )),
            "{text}"
        );
        assert!(text.contains("1 | accept ethertype arp\n"), "{text}");
        let e = run(RulesCommand::Check {
            file: d.path().join("missing.rules"),
        })
        .unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
    }

    #[test]
    fn includes_resolve_next_to_the_including_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("lib")).unwrap();
        write(
            d.path(),
            "lib/common.rules",
            "include \"../lib/more.rules\"\naccept ethertype arp;\n",
        );
        write(d.path(), "lib/more.rules", "tag role id 1 default 0;\n");
        let f = write(
            d.path(),
            "main.rules",
            "include \"lib/common.rules\"\naccept tseq role 0;\n",
        );
        let out = run(RulesCommand::Compile {
            file: f,
            json: true,
        })
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["config"]["rules"].as_array().unwrap().len(), 4);
        assert_eq!(v["tagsByName"]["role"]["id"], 1);
    }

    #[test]
    fn compile_prints_rules_with_sources_and_entries() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "c.rules",
            "cap ssh id 9 default accept dport 22; ;\naccept not ethertype ipv6 or ethertype arp;\n",
        );
        let out = run(RulesCommand::Compile {
            file: f.clone(),
            json: false,
        })
        .unwrap();
        assert!(
            out.contains(&format!(
                "  rule 0  {}:2:1\n    accept not ethertype ipv6 or ethertype arp;\n",
                f.display()
            )),
            "{out}"
        );
        assert!(
            out.contains("MATCH_ETHERTYPE                not etherType=34525"),
            "{out}"
        );
        assert!(
            out.contains("capability ssh (id 9, default; 2 of 64 entries):"),
            "{out}"
        );
    }

    #[test]
    fn explain_shows_both_sides_and_the_deciding_line() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "e.rules",
            "tag role id 1 default 0 enum 1 admin enum 2 server;\naccept ethertype arp;\n\
             accept dport 22 and tseq role admin and treq role server;\ndrop chr tcp_syn and not chr tcp_ack;\naccept;\n",
        );
        let cmd = |sender: &str, receiver: &str, unknown: bool| RulesCommand::Explain {
            file: f.clone(),
            frame: "tcp from 198.18.0.2:40000 to 198.18.0.3:22 with syn".into(),
            sender_tags: sender.into(),
            receiver_tags: receiver.into(),
            caps: "none".into(),
            ztsrc: "1111111111".parse().unwrap(),
            ztdest: "2222222222".into(),
            unknown_receiver_tags: unknown,
            unknown_sender_tags: false,
            side: Side::Both,
            random: 0,
        };
        let out = run(cmd("role=admin", "role=server", false)).unwrap();
        assert!(
            out.contains("frame:    ipv4 tcp 198.18.0.2:40000 -> 198.18.0.3:22 [syn]"),
            "{out}"
        );
        assert!(
            out.contains("== on the sender (outbound) ==\nverdict: ACCEPT\ndecided by rule 1 at "),
            "{out}"
        );
        assert!(
            out.ends_with("result: DELIVERED: the sender sends it and the receiver accepts it\n"),
            "{out}"
        );
        let out = run(cmd("role=admin", "none", false)).unwrap();
        assert!(
            out.contains(&format!(
                "result: DROPPED by the sender: rule 2 at {}:4:1",
                f.display()
            )),
            "{out}"
        );
        let out = run(cmd("role=admin", "none", true)).unwrap();
        assert!(
            out.contains("verdict: ACCEPT (deferred to the receiver)"),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "result: DROPPED by the receiver: rule 2 at {}:4:1",
                f.display()
            )),
            "{out}"
        );
        let mut bad = cmd("none", "none", false);
        if let RulesCommand::Explain { frame, .. } = &mut bad {
            *frame = "tcp to 198.18.0.3:22 sin".into();
        }
        let e = run(bad).unwrap_err();
        assert!(e.to_string().contains("did you mean `syn`?"), "{e}");
    }

    #[test]
    fn help_texts_render() {
        use clap::CommandFactory;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(subcommand)]
            cmd: RulesCommand,
        }
        let mut c = Cli::command();
        c.build();
        let explain = c.find_subcommand_mut("explain").unwrap();
        let help = explain.render_long_help().to_string();
        assert!(help.contains("FRAME DESCRIPTIONS"), "{help}");
        assert!(help.contains("--unknown-receiver-tags"), "{help}");
    }
}

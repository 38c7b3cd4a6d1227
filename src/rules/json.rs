//! ZeroTier's compiled-rule JSON: what the controller API's `rules`, `capabilities` and
//! `tags` fields carry, and what `skylan rules compile -j` prints.
//!
//! Shapes (field names and encodings as ZeroTier's compiler and controller use them):
//!
//! ```json
//! {"type":"MATCH_ETHERTYPE","not":false,"or":false,"etherType":2048}
//! {"type":"MATCH_CHARACTERISTICS","not":true,"or":true,"mask":"1000000000000000"}
//! {"type":"MATCH_ICMP","not":false,"or":false,"icmpType":8,"icmpCode":null}
//! {"type":"ACTION_TEE","address":"deadbeef11","length":-1}
//! {"type":"ACTION_ACCEPT"}
//! ```
//!
//! Capabilities are `{"id":N,"default":bool,"rules":[...]}`, tags `{"id":N,"default":N|null}`.
//! Writing uses ZeroTier's key order (`type`, `not`, `or`, then the fields). A
//! [`RuleSet`] (what the controller stores and ships) is written in canonical form, as
//! ZeroTier's controller renders rules; [`Compiled`] (what `skylan rules compile -j`
//! prints) writes IP networks and `tee`/`watch`/`redirect` addresses as the source
//! spelled them, as ZeroTier's compiler does (see [`Spellings`]). Reading is
//! strict where ZeroTier is silent: an unknown `type`, a missing field or a value out of
//! range is an error naming the JSON path (`rules[3].etherType`), never a silently
//! dropped or truncated rule. `MATCH_TAGS_SAMENESS` (the old name of
//! `MATCH_TAGS_DIFFERENCE`) and a `flags` field on actions are accepted.

use serde::ser::{SerializeMap, SerializeSeq};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use super::compile::{Compiled, Names, Spellings};
use super::error::RulesError;
use super::table::{
    Action, ByteRange, Capability, Condition, CopyLength, Entry, Match, PortRange, RuleSet, TagDef,
    TagOp,
};
use super::values;

fn tag_type(op: TagOp) -> &'static str {
    match op {
        TagOp::Difference => "MATCH_TAGS_DIFFERENCE",
        TagOp::BitwiseAnd => "MATCH_TAGS_BITWISE_AND",
        TagOp::BitwiseOr => "MATCH_TAGS_BITWISE_OR",
        TagOp::BitwiseXor => "MATCH_TAGS_BITWISE_XOR",
        TagOp::Equal => "MATCH_TAGS_EQUAL",
        TagOp::Sender => "MATCH_TAG_SENDER",
        TagOp::Receiver => "MATCH_TAG_RECEIVER",
    }
}

/// The JSON `type` string of a condition.
pub fn condition_type(c: &Condition) -> &'static str {
    match c {
        Condition::ZtSource(_) => "MATCH_SOURCE_ZEROTIER_ADDRESS",
        Condition::ZtDest(_) => "MATCH_DEST_ZEROTIER_ADDRESS",
        Condition::VlanId(_) => "MATCH_VLAN_ID",
        Condition::VlanPcp(_) => "MATCH_VLAN_PCP",
        Condition::VlanDei(_) => "MATCH_VLAN_DEI",
        Condition::EtherType(_) => "MATCH_ETHERTYPE",
        Condition::MacSource(_) => "MATCH_MAC_SOURCE",
        Condition::MacDest(_) => "MATCH_MAC_DEST",
        Condition::Ipv4Source(_) => "MATCH_IPV4_SOURCE",
        Condition::Ipv4Dest(_) => "MATCH_IPV4_DEST",
        Condition::Ipv6Source(_) => "MATCH_IPV6_SOURCE",
        Condition::Ipv6Dest(_) => "MATCH_IPV6_DEST",
        Condition::IpTos { .. } => "MATCH_IP_TOS",
        Condition::IpProtocol(_) => "MATCH_IP_PROTOCOL",
        Condition::Icmp { .. } => "MATCH_ICMP",
        Condition::SourcePort(_) => "MATCH_IP_SOURCE_PORT_RANGE",
        Condition::DestPort(_) => "MATCH_IP_DEST_PORT_RANGE",
        Condition::Characteristics(_) => "MATCH_CHARACTERISTICS",
        Condition::FrameSize(_) => "MATCH_FRAME_SIZE_RANGE",
        Condition::Random(_) => "MATCH_RANDOM",
        Condition::Tag { op, .. } => tag_type(*op),
    }
}

/// The JSON `type` string of an action.
pub fn action_type(a: &Action) -> &'static str {
    match a {
        Action::Accept => "ACTION_ACCEPT",
        Action::Drop => "ACTION_DROP",
        Action::Break => "ACTION_BREAK",
        Action::Tee { .. } => "ACTION_TEE",
        Action::Watch { .. } => "ACTION_WATCH",
        Action::Redirect { .. } => "ACTION_REDIRECT",
    }
}

// ---- writing -------------------------------------------------------------------------

/// An entry's JSON parts: `type`, `not`, `or` (both false for actions) and the other
/// fields in ZeroTier's order.
pub fn entry_fields(e: &Entry) -> (&'static str, bool, bool, Vec<(&'static str, Value)>) {
    let mut f: Vec<(&'static str, Value)> = Vec::new();
    match e {
        Entry::Action(a) => {
            match *a {
                Action::Tee { to, length } | Action::Watch { to, length } => {
                    f.push(("address", to.to_string().into()));
                    f.push(("length", length.to_i64().into()));
                }
                Action::Redirect { to } => f.push(("address", to.to_string().into())),
                _ => {}
            }
            (action_type(a), false, false, f)
        }
        Entry::Match(x) => {
            match x.condition {
                Condition::ZtSource(a) | Condition::ZtDest(a) => {
                    f.push(("zt", a.to_string().into()))
                }
                Condition::VlanId(v) => f.push(("vlanId", v.into())),
                Condition::VlanPcp(v) => f.push(("vlanPcp", v.into())),
                Condition::VlanDei(v) => f.push(("vlanDei", v.into())),
                Condition::EtherType(v) => f.push(("etherType", v.into())),
                Condition::MacSource(a) | Condition::MacDest(a) => {
                    f.push(("mac", a.to_string().into()))
                }
                Condition::Ipv4Source(n) | Condition::Ipv4Dest(n) => {
                    f.push(("ip", n.to_string().into()))
                }
                Condition::Ipv6Source(n) | Condition::Ipv6Dest(n) => {
                    f.push(("ip", n.to_string().into()))
                }
                Condition::IpTos { mask, range } => {
                    f.push(("mask", mask.into()));
                    f.push(("start", range.start().into()));
                    f.push(("end", range.end().into()));
                }
                Condition::IpProtocol(p) => f.push(("ipProtocol", p.into())),
                Condition::Icmp { icmp_type, code } => {
                    f.push(("icmpType", icmp_type.into()));
                    f.push(("icmpCode", code.map(Value::from).unwrap_or(Value::Null)));
                }
                Condition::SourcePort(r) | Condition::DestPort(r) | Condition::FrameSize(r) => {
                    f.push(("start", r.start().into()));
                    f.push(("end", r.end().into()));
                }
                Condition::Characteristics(mask) => f.push(("mask", format!("{mask:016x}").into())),
                Condition::Random(p) => f.push(("probability", p.into())),
                Condition::Tag { id, value, .. } => {
                    f.push(("id", id.into()));
                    f.push(("value", value.into()));
                }
            }
            (condition_type(&x.condition), x.not, x.or, f)
        }
    }
}

impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        EntryJson {
            entry: self,
            written: None,
        }
        .serialize(s)
    }
}

/// An entry with, optionally, its `ip` or `address` value as the source wrote it.
struct EntryJson<'a> {
    entry: &'a Entry,
    written: Option<&'a str>,
}

impl Serialize for EntryJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (ty, not, or, fields) = entry_fields(self.entry);
        let mut m = s.serialize_map(None)?;
        m.serialize_entry("type", ty)?;
        if let Entry::Match(_) = self.entry {
            m.serialize_entry("not", &not)?;
            m.serialize_entry("or", &or)?;
        }
        for (k, v) in &fields {
            match self.written {
                Some(text) if matches!(*k, "ip" | "address") => m.serialize_entry(k, text)?,
                _ => m.serialize_entry(k, v)?,
            }
        }
        m.end()
    }
}

/// A table, each entry with its spelling from `written` (`(index, text)` in index order).
struct TableJson<'a> {
    entries: &'a [Entry],
    written: &'a [(usize, String)],
}

impl Serialize for TableJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.entries.len()))?;
        let mut written = self.written.iter().peekable();
        for (i, entry) in self.entries.iter().enumerate() {
            let text = written.next_if(|(at, _)| *at == i).map(|(_, t)| t.as_str());
            q.serialize_element(&EntryJson {
                entry,
                written: text,
            })?;
        }
        q.end()
    }
}

impl Serialize for Capability {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CapabilityJson {
            cap: self,
            written: &[],
        }
        .serialize(s)
    }
}

struct CapabilityJson<'a> {
    cap: &'a Capability,
    written: &'a [(usize, String)],
}

impl Serialize for CapabilityJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("id", &self.cap.id)?;
        m.serialize_entry("default", &self.cap.default)?;
        m.serialize_entry(
            "rules",
            &TableJson {
                entries: self.cap.entries(),
                written: self.written,
            },
        )?;
        m.end()
    }
}

impl Serialize for TagDef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry("id", &self.id)?;
        m.serialize_entry("default", &self.default)?;
        m.end()
    }
}

/// `{"rules":[...],"capabilities":[...],"tags":[...]}` — the three controller fields,
/// every value in its canonical form.
impl Serialize for RuleSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        ConfigJson {
            rules: self,
            spellings: &Spellings::default(),
        }
        .serialize(s)
    }
}

/// The three controller fields with the values in `spellings` as written.
struct ConfigJson<'a> {
    rules: &'a RuleSet,
    spellings: &'a Spellings,
}

impl Serialize for ConfigJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry(
            "rules",
            &TableJson {
                entries: self.rules.entries(),
                written: &self.spellings.base,
            },
        )?;
        let caps: Vec<CapabilityJson<'_>> = self
            .rules
            .capabilities()
            .iter()
            .enumerate()
            .map(|(i, cap)| CapabilityJson {
                cap,
                written: self
                    .spellings
                    .capabilities
                    .get(i)
                    .map_or(&[][..], Vec::as_slice),
            })
            .collect();
        m.serialize_entry("capabilities", &caps)?;
        m.serialize_entry("tags", self.rules.tags())?;
        m.end()
    }
}

/// Ordered `{name: value}` map.
struct OrderedMap<'a, V>(Vec<(&'a str, V)>);

impl<V: Serialize> Serialize for OrderedMap<'_, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

struct TagsByName<'a>(&'a Names);

impl Serialize for TagsByName<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.tags.len()))?;
        for t in &self.0.tags {
            struct One<'b>(&'b super::compile::TagInfo);
            impl Serialize for One<'_> {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let mut m = s.serialize_map(Some(4))?;
                    m.serialize_entry("id", &self.0.id)?;
                    m.serialize_entry("default", &self.0.default)?;
                    let e: Vec<(&str, u32)> =
                        self.0.enums.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                    m.serialize_entry("enums", &OrderedMap(e))?;
                    let f: Vec<(&str, u32)> =
                        self.0.flags.iter().map(|(n, v)| (n.as_str(), *v)).collect();
                    m.serialize_entry("flags", &OrderedMap(f))?;
                    m.end()
                }
            }
            m.serialize_entry(&t.name, &One(t))?;
        }
        m.end()
    }
}

/// The whole compiler output in the shape of ZeroTier's `cli.js`:
/// `{"config":{"rules","capabilities","tags"},"capabilitiesByName","tagsByName"}`.
impl Serialize for Compiled {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry(
            "config",
            &ConfigJson {
                rules: &self.rules,
                spellings: &self.spellings,
            },
        )?;
        let caps: Vec<(&str, u32)> = self
            .names
            .capabilities
            .iter()
            .map(|c| (c.name.as_str(), c.id))
            .collect();
        m.serialize_entry("capabilitiesByName", &OrderedMap(caps))?;
        m.serialize_entry("tagsByName", &TagsByName(&self.names))?;
        m.end()
    }
}

impl Compiled {
    /// Pretty-printed JSON in the shape of ZeroTier's rule compiler output.
    pub fn to_json_pretty(&self) -> String {
        pretty(self)
    }
}

impl RuleSet {
    /// Pretty-printed `{"rules","capabilities","tags"}`.
    pub fn to_json_pretty(&self) -> String {
        pretty(self)
    }
}

fn pretty<T: Serialize>(v: &T) -> String {
    // Invariant: these Serialize impls only write maps, sequences, strings, numbers,
    // booleans and nulls, which cannot fail to serialize.
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Entries as a JSON array (`serde_json::Value`; key order is not kept by `Value`).
pub fn entries_to_value(entries: &[Entry]) -> Value {
    serde_json::to_value(EntriesRef(entries)).unwrap_or(Value::Null)
}

struct EntriesRef<'a>(&'a [Entry]);

impl Serialize for EntriesRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.0.len()))?;
        for e in self.0 {
            q.serialize_element(e)?;
        }
        q.end()
    }
}

// ---- reading -------------------------------------------------------------------------

fn field<'v>(
    o: &'v serde_json::Map<String, Value>,
    at: &str,
    k: &str,
) -> Result<&'v Value, RulesError> {
    o.get(k)
        .ok_or_else(|| RulesError::json(format!("{at}.{k}"), "missing"))
}

fn uint(
    o: &serde_json::Map<String, Value>,
    at: &str,
    k: &str,
    max: u64,
) -> Result<u64, RulesError> {
    let v = field(o, at, k)?;
    match v.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ => Err(RulesError::json(
            format!("{at}.{k}"),
            format!("must be an integer between 0 and {max}, got {v}"),
        )),
    }
}

fn string<'v>(
    o: &'v serde_json::Map<String, Value>,
    at: &str,
    k: &str,
) -> Result<&'v str, RulesError> {
    let v = field(o, at, k)?;
    v.as_str()
        .ok_or_else(|| RulesError::json(format!("{at}.{k}"), format!("must be a string, got {v}")))
}

fn flag(o: &serde_json::Map<String, Value>, at: &str, k: &str) -> Result<bool, RulesError> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(RulesError::json(
            format!("{at}.{k}"),
            format!("must be true or false, got {v}"),
        )),
    }
}

fn with_value<T>(at: String, r: Result<T, values::ValueError>) -> Result<T, RulesError> {
    r.map_err(|e| RulesError::json(at, e.message))
}

fn range16(o: &serde_json::Map<String, Value>, at: &str) -> Result<PortRange, RulesError> {
    let a = uint(o, at, "start", 65535)? as u16;
    let b = uint(o, at, "end", 65535)? as u16;
    PortRange::new(a, b)
        .ok_or_else(|| RulesError::json(format!("{at}.end"), format!("end {b} is below start {a}")))
}

/// Reads one entry; `at` names it in errors (e.g. `rules[3]`).
pub fn entry_from_value(v: &Value, at: &str) -> Result<Entry, RulesError> {
    let Some(o) = v.as_object() else {
        return Err(RulesError::json(at, format!("must be an object, got {v}")));
    };
    let ty = string(o, at, "type")?;
    let addr = |k: &str| -> Result<crate::types::NodeAddress, RulesError> {
        with_value(format!("{at}.{k}"), values::node_address(string(o, at, k)?))
    };
    let action = |a| Ok(Entry::Action(a));
    let length = || -> Result<CopyLength, RulesError> {
        match o.get("length") {
            None | Some(Value::Null) => Ok(CopyLength::Whole),
            Some(v) => v.as_i64().and_then(CopyLength::from_i64).ok_or_else(|| {
                RulesError::json(
                    format!("{at}.length"),
                    format!("must be -1, 0 or 1-65535, got {v}"),
                )
            }),
        }
    };
    let condition = match ty {
        "ACTION_ACCEPT" => return action(Action::Accept),
        "ACTION_DROP" => return action(Action::Drop),
        "ACTION_BREAK" => return action(Action::Break),
        "ACTION_TEE" => {
            return action(Action::Tee {
                to: addr("address")?,
                length: length()?,
            });
        }
        "ACTION_WATCH" => {
            return action(Action::Watch {
                to: addr("address")?,
                length: length()?,
            });
        }
        "ACTION_REDIRECT" => {
            return action(Action::Redirect {
                to: addr("address")?,
            });
        }
        "ACTION_PRIORITY" => {
            return Err(RulesError::json(
                format!("{at}.type"),
                "ACTION_PRIORITY is not supported (ZeroTier's compiler does not produce it either)",
            ));
        }
        "MATCH_SOURCE_ZEROTIER_ADDRESS" => Condition::ZtSource(addr("zt")?),
        "MATCH_DEST_ZEROTIER_ADDRESS" => Condition::ZtDest(addr("zt")?),
        "MATCH_VLAN_ID" => Condition::VlanId(uint(o, at, "vlanId", 4095)? as u16),
        "MATCH_VLAN_PCP" => Condition::VlanPcp(uint(o, at, "vlanPcp", 7)? as u8),
        "MATCH_VLAN_DEI" => Condition::VlanDei(uint(o, at, "vlanDei", 1)? as u8),
        "MATCH_ETHERTYPE" => Condition::EtherType(uint(o, at, "etherType", 0xffff)? as u16),
        "MATCH_MAC_SOURCE" => Condition::MacSource(with_value(
            format!("{at}.mac"),
            values::mac(string(o, at, "mac")?),
        )?),
        "MATCH_MAC_DEST" => Condition::MacDest(with_value(
            format!("{at}.mac"),
            values::mac(string(o, at, "mac")?),
        )?),
        "MATCH_IPV4_SOURCE" | "MATCH_IPV4_DEST" => {
            let n = with_value(format!("{at}.ip"), values::ip_net(string(o, at, "ip")?))?;
            let values::IpNet::V4(n) = n else {
                return Err(RulesError::json(
                    format!("{at}.ip"),
                    "must be an IPv4 network",
                ));
            };
            if ty == "MATCH_IPV4_SOURCE" {
                Condition::Ipv4Source(n)
            } else {
                Condition::Ipv4Dest(n)
            }
        }
        "MATCH_IPV6_SOURCE" | "MATCH_IPV6_DEST" => {
            let n = with_value(format!("{at}.ip"), values::ip_net(string(o, at, "ip")?))?;
            let values::IpNet::V6(n) = n else {
                return Err(RulesError::json(
                    format!("{at}.ip"),
                    "must be an IPv6 network",
                ));
            };
            if ty == "MATCH_IPV6_SOURCE" {
                Condition::Ipv6Source(n)
            } else {
                Condition::Ipv6Dest(n)
            }
        }
        "MATCH_IP_TOS" => {
            let mask = uint(o, at, "mask", 255)? as u8;
            let a = uint(o, at, "start", 255)? as u8;
            let b = uint(o, at, "end", 255)? as u8;
            let range = ByteRange::new(a, b).ok_or_else(|| {
                RulesError::json(format!("{at}.end"), format!("end {b} is below start {a}"))
            })?;
            Condition::IpTos { mask, range }
        }
        "MATCH_IP_PROTOCOL" => Condition::IpProtocol(uint(o, at, "ipProtocol", 255)? as u8),
        "MATCH_ICMP" => {
            let icmp_type = uint(o, at, "icmpType", 255)? as u8;
            let code = match o.get("icmpCode") {
                None | Some(Value::Null) => None,
                Some(_) => Some(uint(o, at, "icmpCode", 255)? as u8),
            };
            Condition::Icmp { icmp_type, code }
        }
        "MATCH_IP_SOURCE_PORT_RANGE" => Condition::SourcePort(range16(o, at)?),
        "MATCH_IP_DEST_PORT_RANGE" => Condition::DestPort(range16(o, at)?),
        "MATCH_FRAME_SIZE_RANGE" => Condition::FrameSize(range16(o, at)?),
        "MATCH_CHARACTERISTICS" => {
            let v = field(o, at, "mask")?;
            let mask = match v {
                Value::String(s) if !s.is_empty() && s.len() <= 16 => {
                    u64::from_str_radix(s, 16).ok()
                }
                Value::Number(n) => n.as_u64(),
                _ => None,
            };
            Condition::Characteristics(mask.ok_or_else(|| {
                RulesError::json(
                    format!("{at}.mask"),
                    format!("must be up to 16 hex digits (or an integer), got {v}"),
                )
            })?)
        }
        "MATCH_RANDOM" => {
            Condition::Random(uint(o, at, "probability", u64::from(u32::MAX))? as u32)
        }
        t if tag_op(t).is_some() => {
            // Invariant: checked by the guard.
            let op = tag_op(t).unwrap_or(TagOp::Sender);
            Condition::Tag {
                op,
                id: uint(o, at, "id", u64::from(u32::MAX))? as u32,
                value: uint(o, at, "value", u64::from(u32::MAX))? as u32,
            }
        }
        "INTEGER_RANGE" | "MATCH_INTEGER_RANGE" => {
            return Err(RulesError::json(
                format!("{at}.type"),
                format!("{ty} is not supported by skylan (it has no rules-language keyword)"),
            ));
        }
        other => {
            return Err(RulesError::json(
                format!("{at}.type"),
                format!("unknown rule type {other:?}"),
            ));
        }
    };
    Ok(Entry::Match(Match {
        not: flag(o, at, "not")?,
        or: flag(o, at, "or")?,
        condition,
    }))
}

fn tag_op(t: &str) -> Option<TagOp> {
    Some(match t {
        "MATCH_TAGS_DIFFERENCE" | "MATCH_TAGS_SAMENESS" => TagOp::Difference,
        "MATCH_TAGS_BITWISE_AND" => TagOp::BitwiseAnd,
        "MATCH_TAGS_BITWISE_OR" => TagOp::BitwiseOr,
        "MATCH_TAGS_BITWISE_XOR" => TagOp::BitwiseXor,
        "MATCH_TAGS_EQUAL" => TagOp::Equal,
        "MATCH_TAG_SENDER" => TagOp::Sender,
        "MATCH_TAG_RECEIVER" => TagOp::Receiver,
        _ => return None,
    })
}

/// Reads a rule table (a JSON array); `at` names it in errors (e.g. `rules`).
pub fn entries_from_value(v: &Value, at: &str) -> Result<Vec<Entry>, RulesError> {
    let Some(a) = v.as_array() else {
        return Err(RulesError::json(at, format!("must be an array, got {v}")));
    };
    a.iter()
        .enumerate()
        .map(|(i, e)| entry_from_value(e, &format!("{at}[{i}]")))
        .collect()
}

/// Reads one capability object.
pub fn capability_from_value(v: &Value, at: &str) -> Result<Capability, RulesError> {
    let Some(o) = v.as_object() else {
        return Err(RulesError::json(at, format!("must be an object, got {v}")));
    };
    let id = uint(o, at, "id", u64::from(u32::MAX))? as u32;
    let default = flag(o, at, "default")?;
    let entries = match o.get("rules") {
        None | Some(Value::Null) => Vec::new(),
        Some(r) => entries_from_value(r, &format!("{at}.rules"))?,
    };
    Ok(Capability::new(id, default, entries)?)
}

/// Reads one tag definition object.
pub fn tag_from_value(v: &Value, at: &str) -> Result<TagDef, RulesError> {
    let Some(o) = v.as_object() else {
        return Err(RulesError::json(at, format!("must be an object, got {v}")));
    };
    let id = uint(o, at, "id", u64::from(u32::MAX))? as u32;
    let default = match o.get("default") {
        None | Some(Value::Null) => None,
        Some(_) => Some(uint(o, at, "default", u64::from(u32::MAX))? as u32),
    };
    Ok(TagDef { id, default })
}

impl RuleSet {
    /// Reads the controller's three fields (`rules`, `capabilities`, `tags`); `null`
    /// capabilities or tags mean none.
    pub fn from_json_values(
        rules: &Value,
        capabilities: &Value,
        tags: &Value,
    ) -> Result<Self, RulesError> {
        let entries = entries_from_value(rules, "rules")?;
        let caps = match capabilities {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, c)| capability_from_value(c, &format!("capabilities[{i}]")))
                .collect::<Result<_, _>>()?,
            v => {
                return Err(RulesError::json(
                    "capabilities",
                    format!("must be an array, got {v}"),
                ));
            }
        };
        let tag_defs = match tags {
            Value::Null => Vec::new(),
            Value::Array(a) => a
                .iter()
                .enumerate()
                .map(|(i, t)| tag_from_value(t, &format!("tags[{i}]")))
                .collect::<Result<_, _>>()?,
            v => {
                return Err(RulesError::json(
                    "tags",
                    format!("must be an array, got {v}"),
                ));
            }
        };
        Ok(RuleSet::new(entries, caps, tag_defs)?)
    }

    /// Reads `{"rules":[...],"capabilities":[...],"tags":[...]}` text.
    pub fn from_json_str(text: &str) -> Result<Self, RulesError> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| RulesError::json("(document)", e.to_string()))?;
        Self::from_json_values(
            v.get("rules").unwrap_or(&Value::Null),
            v.get("capabilities").unwrap_or(&Value::Null),
            v.get("tags").unwrap_or(&Value::Null),
        )
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        entry_from_value(&v, "rule").map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Capability {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        capability_from_value(&v, "capability").map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for TagDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        tag_from_value(&v, "tag").map_err(serde::de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for RuleSet {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        RuleSet::from_json_values(
            v.get("rules").unwrap_or(&Value::Null),
            v.get("capabilities").unwrap_or(&Value::Null),
            v.get("tags").unwrap_or(&Value::Null),
        )
        .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::compile_str;

    #[test]
    fn reads_zerotier_controller_renderings() {
        let v: Value = serde_json::from_str(
            r#"[{"type":"MATCH_CHARACTERISTICS","not":false,"or":false,"mask":"0000000000000002"},
                {"type":"MATCH_ICMP","not":true,"or":false,"icmpType":8,"icmpCode":null},
                {"type":"MATCH_TAGS_SAMENESS","id":1,"value":0},
                {"type":"ACTION_TEE","address":"deadbeef11","flags":0,"length":65535},
                {"type":"ACTION_ACCEPT"}]"#,
        )
        .unwrap();
        let e = entries_from_value(&v, "rules").unwrap();
        assert_eq!(e.len(), 5);
        assert!(matches!(
            e[2],
            Entry::Match(Match {
                condition: Condition::Tag {
                    op: TagOp::Difference,
                    ..
                },
                ..
            })
        ));
    }

    #[test]
    fn errors_name_the_path() {
        let v: Value = serde_json::from_str(
            r#"[{"type":"ACTION_ACCEPT"},{"type":"MATCH_ETHERTYPE","etherType":70000}]"#,
        )
        .unwrap();
        let e = entries_from_value(&v, "rules").unwrap_err();
        assert_eq!(
            e.to_string(),
            "rules[1].etherType: must be an integer between 0 and 65535, got 70000"
        );
        let v: Value = serde_json::from_str(r#"[{"type":"MATCH_BOGUS"}]"#).unwrap();
        assert!(
            entries_from_value(&v, "rules")
                .unwrap_err()
                .to_string()
                .contains("unknown rule type")
        );
        let v: Value =
            serde_json::from_str(r#"[{"type":"MATCH_ETHERTYPE","etherType":1}]"#).unwrap();
        assert!(
            RuleSet::from_json_values(&v, &Value::Null, &Value::Null)
                .unwrap_err()
                .to_string()
                .contains("no action follows")
        );
    }

    #[test]
    fn compiled_json_round_trips() {
        let c = compile_str(
            "tag t id 5 default 1 enum 2 two;\ncap c id 9 default tee 128 1111111111 dport 22; accept; ;\n\
             drop not ethertype ipv4 or not chr ipauth,inbound;\naccept icmp 8 -1 and ipsrc fd00::/8 and tseq t two and random 0.25;\n\
             redirect 2222222222 iptos 0xfc 8-16 macdest 01:00:5e:00:00:01 framesize 0-100;",
        )
        .unwrap();
        let text = c.rules.to_json_pretty();
        let back = RuleSet::from_json_str(&text).unwrap();
        assert_eq!(back, c.rules);
        let whole = c.to_json_pretty();
        assert!(whole.contains("\"tagsByName\""));
        assert!(whole.find("\"type\"").unwrap() < whole.find("\"not\"").unwrap());
    }
}

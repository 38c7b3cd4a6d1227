//! Property tests: the evaluator against the reference interpreter over random rule sets,
//! frames, tags and directions; `explain` against the evaluator; and round trips
//! (JSON, and rendering back to source then compiling).

use proptest::prelude::*;

use super::describe::frame_from_description;
use super::eval::{Direction, FrameContext, PeerTags};
use super::explain::explain;
use super::reference::reference_evaluate;
use super::table::{
    Action, ByteRange, Capability, Condition, CopyLength, Entry, Ipv4Cidr, Ipv6Cidr, Match,
    PortRange, RuleSet, TagDef, TagOp, rules_of,
};
use super::{compile_str, evaluate, render_rule};
use crate::types::{Mac, NodeAddress};

fn addr(i: u8) -> NodeAddress {
    // Invariant: 0x11_1111_1100 + i is never reserved.
    NodeAddress::new(0x11_1111_1100 + u64::from(i)).unwrap_or_else(|_| unreachable!())
}

const MACS: [[u8; 6]; 4] = [
    [0x32, 0xaa, 0xaa, 0xaa, 0xaa, 0x01],
    [0x32, 0xaa, 0xaa, 0xaa, 0xaa, 0x02],
    [0xff; 6],
    [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb],
];

fn port_range() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        Just((22, 22)),
        Just((80, 80)),
        Just((0, 1023)),
        Just((1024, 65535)),
        Just((40000, 50000)),
        (0u16..100, 0u16..100),
    ]
    .prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)).unwrap_or_else(|| unreachable!()))
}

fn condition() -> impl Strategy<Value = Condition> {
    let v4 = prop_oneof![
        Just(Ipv4Cidr::new([198, 18, 0, 0].into(), 15)),
        Just(Ipv4Cidr::new([198, 18, 0, 2].into(), 32)),
        Just(Ipv4Cidr::new([203, 0, 113, 0].into(), 24)),
        Just(Ipv4Cidr::new([0, 0, 0, 0].into(), 0)),
    ]
    .prop_map(|n| n.unwrap_or_else(|| unreachable!()));
    let v6 = prop_oneof![
        Just(Ipv6Cidr::new(
            "fd00::".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST),
            8
        )),
        Just(Ipv6Cidr::new(
            "fd00::1".parse().unwrap_or(std::net::Ipv6Addr::LOCALHOST),
            128
        )),
    ]
    .prop_map(|n| n.unwrap_or_else(|| unreachable!()));
    let tag_op = prop_oneof![
        Just(TagOp::Difference),
        Just(TagOp::BitwiseAnd),
        Just(TagOp::BitwiseOr),
        Just(TagOp::BitwiseXor),
        Just(TagOp::Equal),
        Just(TagOp::Sender),
        Just(TagOp::Receiver),
    ];
    prop_oneof![
        (0u8..4).prop_map(|i| Condition::ZtSource(addr(i))),
        (0u8..4).prop_map(|i| Condition::ZtDest(addr(i))),
        prop_oneof![Just(0u16), Just(7), Just(42)].prop_map(Condition::VlanId),
        (0u8..8).prop_map(Condition::VlanPcp),
        (0u8..2).prop_map(Condition::VlanDei),
        prop_oneof![Just(0x0800u16), Just(0x0806), Just(0x86dd), Just(0x88cc)]
            .prop_map(Condition::EtherType),
        (0usize..4).prop_map(|i| Condition::MacSource(Mac(MACS[i]))),
        (0usize..4).prop_map(|i| Condition::MacDest(Mac(MACS[i]))),
        v4.clone().prop_map(Condition::Ipv4Source),
        v4.prop_map(Condition::Ipv4Dest),
        v6.clone().prop_map(Condition::Ipv6Source),
        v6.prop_map(Condition::Ipv6Dest),
        (any::<u8>(), 0u8..64, 0u8..64).prop_map(|(mask, a, b)| Condition::IpTos {
            mask,
            range: ByteRange::new(a.min(b), a.max(b)).unwrap_or_else(|| unreachable!()),
        }),
        prop_oneof![Just(1u8), Just(6), Just(17), Just(58), Just(132)]
            .prop_map(Condition::IpProtocol),
        (
            prop_oneof![Just(0u8), Just(3), Just(8), Just(128)],
            prop::option::of(0u8..2)
        )
            .prop_map(|(icmp_type, code)| Condition::Icmp { icmp_type, code }),
        port_range().prop_map(Condition::SourcePort),
        port_range().prop_map(Condition::DestPort),
        prop_oneof![
            Just(0x2u64),
            Just(0x10),
            Just(0x12),
            Just(1 << 63),
            Just(1 << 62),
            Just(1 << 61),
            Just(1 << 60),
            Just(1 << 59),
            any::<u64>()
        ]
        .prop_map(Condition::Characteristics),
        prop_oneof![Just((0u16, 60u16)), Just((40, 1500)), Just((0, 65535))].prop_map(|(a, b)| {
            Condition::FrameSize(PortRange::new(a, b).unwrap_or_else(|| unreachable!()))
        }),
        prop_oneof![Just(0u32), Just(u32::MAX), Just(u32::MAX / 2), any::<u32>()]
            .prop_map(Condition::Random),
        (tag_op, 1u32..4, 0u32..4).prop_map(|(op, id, value)| Condition::Tag { op, id, value }),
    ]
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        4 => Just(Action::Accept),
        3 => Just(Action::Drop),
        2 => Just(Action::Break),
        1 => ((0u8..5), prop_oneof![Just(CopyLength::Whole), Just(CopyLength::WholeAsZero), Just(CopyLength::from_i64(20).unwrap_or(CopyLength::Whole))])
            .prop_map(|(i, length)| Action::Tee { to: addr(i), length }),
        1 => (0u8..5).prop_map(|i| Action::Watch { to: addr(i), length: CopyLength::Whole }),
        1 => (0u8..5).prop_map(|i| Action::Redirect { to: addr(i) }),
    ]
}

fn table(max_rules: usize, max_entries: usize) -> impl Strategy<Value = Vec<Entry>> {
    prop::collection::vec(
        (
            prop::collection::vec(
                (any::<bool>(), prop::bool::weighted(0.25), condition()),
                0..4,
            ),
            action(),
        ),
        0..max_rules,
    )
    .prop_map(move |rules| {
        let mut out = Vec::new();
        for (ms, a) in rules {
            if out.len() + ms.len() + 1 > max_entries {
                break;
            }
            for (not, or, condition) in ms {
                out.push(Entry::Match(Match { not, or, condition }));
            }
            out.push(Entry::Action(a));
        }
        out
    })
}

fn rule_set() -> impl Strategy<Value = RuleSet> {
    (
        table(14, 1024),
        prop::collection::vec((1u32..6, any::<bool>(), table(5, 64)), 0..4),
        prop::collection::vec((1u32..4, prop::option::of(0u32..4)), 0..4),
    )
        .prop_map(|(base, caps, tags)| {
            let mut cs: Vec<Capability> = Vec::new();
            for (id, d, t) in caps {
                if cs.iter().all(|c| c.id != id)
                    && let Ok(c) = Capability::new(id, d, t)
                {
                    cs.push(c);
                }
            }
            let mut ts: Vec<TagDef> = Vec::new();
            for (id, default) in tags {
                if ts.iter().all(|t| t.id != id) {
                    ts.push(TagDef { id, default });
                }
            }
            RuleSet::new(base, cs, ts).unwrap_or_default()
        })
}

fn frame() -> impl Strategy<Value = Vec<u8>> {
    let described = (
        prop_oneof![
            Just("tcp"),
            Just("udp"),
            Just("icmp"),
            Just("sctp"),
            Just("arp"),
            Just("ethertype 0x88cc"),
            Just("proto 47")
        ],
        any::<bool>(),
        prop_oneof![Just(22u16), Just(80), Just(443), Just(45000), Just(5)],
        prop_oneof![Just(22u16), Just(80), Just(443), Just(45000), Just(0)],
        prop_oneof![
            Just(""),
            Just("syn"),
            Just("syn,ack"),
            Just("ack"),
            Just("fin,rst,psh,urg,ece,cwr,ns")
        ],
        prop_oneof![Just(""), Just("vlan 42 pcp 5 dei"), Just("vlan 7")],
        prop_oneof![Just(""), Just("tos 0x28"), Just("dscp 46")],
        (0usize..4, 0usize..4),
        prop_oneof![Just(""), Just("type 3 code 1"), Just("echo-reply")],
        prop_oneof![Just(""), Just("size 100"), Just("size 1500")],
    )
        .prop_map(|(p, v6, sp, dp, flags, vlan, tos, (ms, md), icmp, size)| {
            let v6 = v6 && p != "arp";
            let p = if v6 && p == "icmp" { "icmp6" } else { p };
            let (a, b) = if v6 {
                (format!("[fd00::1]:{sp}"), format!("[fd00::2]:{dp}"))
            } else {
                (format!("198.18.0.2:{sp}"), format!("203.0.113.9:{dp}"))
            };
            let (a, b) = if p == "arp" {
                ("198.18.0.2".to_string(), "198.18.0.3".to_string())
            } else {
                (a, b)
            };
            let m = |i: usize| Mac(MACS[i]).to_string();
            let text = format!(
                "{p} from {a} to {b} {flags} {vlan} {tos} {icmp} {size} macsrc {} macdest {}",
                m(ms),
                m(md)
            );
            frame_from_description(&text)
                .map(|d| d.frame)
                .unwrap_or_default()
        });
    prop_oneof![
        6 => described.clone(),
        1 => (described, 0usize..80).prop_map(|(f, n)| f[..n.min(f.len())].to_vec()),
        1 => prop::collection::vec(any::<u8>(), 0..80),
    ]
}

fn tags() -> impl Strategy<Value = Option<Vec<(u32, u32)>>> {
    prop::option::weighted(0.8, prop::collection::vec((1u32..4, 0u32..4), 0..3))
}

#[derive(Debug, Clone)]
struct Case {
    outbound: bool,
    src: u8,
    dest: Option<u8>,
    sender_tags: Option<Vec<(u32, u32)>>,
    receiver_tags: Option<Vec<(u32, u32)>>,
    caps: Vec<u32>,
    ipauth: bool,
    macauth: bool,
    random: u32,
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        0u8..4,
        prop::option::weighted(0.85, 0u8..4),
        tags(),
        tags(),
        prop::collection::vec(1u32..6, 0..4),
        any::<bool>(),
        any::<bool>(),
        any::<u32>(),
    )
        .prop_map(
            |(outbound, src, dest, sender_tags, receiver_tags, caps, ipauth, macauth, random)| {
                Case {
                    outbound,
                    src,
                    dest,
                    sender_tags,
                    receiver_tags,
                    caps,
                    ipauth,
                    macauth,
                    random,
                }
            },
        )
}

fn ctx<'a>(c: &'a Case, frame: &'a [u8]) -> FrameContext<'a> {
    let tags = |t: &'a Option<Vec<(u32, u32)>>| match t {
        Some(v) => PeerTags::Known(v),
        None => PeerTags::Unknown,
    };
    FrameContext {
        direction: if c.outbound {
            Direction::Outbound
        } else {
            Direction::Inbound
        },
        ztsrc: addr(c.src),
        ztdest: c.dest.map(addr),
        frame,
        sender_tags: tags(&c.sender_tags),
        receiver_tags: tags(&c.receiver_tags),
        sender_capabilities: &c.caps,
        ip_authenticated: c.ipauth,
        mac_authenticated: c.macauth,
        random: c.random,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    /// Zero divergences between the evaluator and the reference interpreter, over random
    /// rule sets, each tried on several random frames and contexts.
    #[test]
    fn evaluator_matches_reference(
        rules in rule_set(),
        trials in prop::collection::vec((frame(), case()), 1..6),
    ) {
        for (f, c) in &trials {
            let ctx = ctx(c, f);
            let fast = evaluate(&rules, &ctx);
            let slow = reference_evaluate(&rules, &ctx);
            prop_assert_eq!(fast, slow, "frame {:02x?} case {:?}", f, c);
            prop_assert_eq!(explain(&rules, &ctx).decision, fast);
            let l2 = crate::wire::EthernetFrame::parse(f);
            prop_assert_eq!(rules.evaluate_parsed(&ctx, l2.as_ref()), fast);
            if !c.outbound {
                prop_assert!(!fast.deferred, "the receiver never defers");
            }
        }
    }

    /// The JSON form reads back to the same rule set.
    #[test]
    fn json_round_trips(rules in rule_set()) {
        let text = rules.to_json_pretty();
        prop_assert_eq!(RuleSet::from_json_str(&text).ok(), Some(rules));
    }

    /// Rendering each rule as source and compiling it gives the same entries back.
    #[test]
    fn rendered_rules_compile_back(rules in rule_set()) {
        let src: Vec<String> = rules_of(rules.entries()).map(|(_, r)| render_rule(r, None)).collect();
        let text = src.join("\n");
        let compiled = compile_str(&text);
        prop_assert!(compiled.is_ok(), "{}\n{:?}", text, compiled.err());
        if let Ok(c) = compiled {
            prop_assert_eq!(c.rules.entries(), rules.entries());
        }
    }

    /// The compiler never panics on arbitrary text, and what it accepts evaluates.
    #[test]
    fn compiler_survives_noise(text in "[ -~\n\t]{0,200}") {
        if let Ok(c) = compile_str(&text) {
            let f = frame_from_description("tcp").map(|d| d.frame).unwrap_or_default();
            let case = Case { outbound: true, src: 0, dest: Some(1), sender_tags: None, receiver_tags: None, caps: vec![], ipauth: true, macauth: true, random: 0 };
            let _ = evaluate(&c.rules, &ctx(&case, &f));
        }
    }

    /// Keyword soup: sequences of real tokens find the parser's corners faster than noise.
    #[test]
    fn compiler_survives_token_soup(words in prop::collection::vec(prop_oneof![
        Just("accept"), Just("drop"), Just("break"), Just("tee"), Just("redirect"), Just(";"),
        Just("tag"), Just("cap"), Just("macro"), Just("include"), Just("id"), Just("default"),
        Just("enum"), Just("flag"), Just("not"), Just("or"), Just("and"), Just("dport"),
        Just("ethertype"), Just("tseq"), Just("x"), Just("1"), Just("-1"), Just("$p"),
        Just("m($p)"), Just("m(1)"), Just("1111111111"), Just("ipv4"), Just("a=1"),
    ], 0..40)) {
        let _ = compile_str(&words.join(" "));
    }
}

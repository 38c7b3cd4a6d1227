//! Rules evaluator and compiler benchmarks.
//!
//! - `evaluate/20_rules/*` and `evaluate/200_rules/*`: ns per frame for a realistic
//!   20-rule set and a generated 200-rule set, for a frame decided early and for one
//!   that is checked against every rule (the worst case: it falls through to the end).
//! - `compile/1000_rules`: compiling a generated file of 1,000 rules (300 in the base
//!   table, 700 in 100 capabilities; the base table holds at most 1,024 entries).
//!
//! Run: `cargo bench --bench rules` (numbers, never pass/fail).

use std::fmt::Write as _;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use skylan::rules::describe::frame_from_description;
use skylan::rules::{Direction, FrameContext, PeerTags, RuleSet, compile_str, evaluate};
use skylan::types::NodeAddress;

const TWENTY: &str = "
tag role id 10 default 100 enum 100 spoke enum 200 hub;
tag dept id 11 default 0;
accept ethertype arp;
drop not ethertype ipv4 and not ethertype ipv6 or not chr ipauth;
drop tseq role spoke and treq role spoke and not ethertype arp;
accept icmp 8 -1 and tor role 200;
accept icmp 0 -1;
accept ipprotocol udp and dport 53;
accept ipprotocol udp and sport 53;
accept ipprotocol udp and dport 67-68;
accept dport 22 and ipprotocol tcp and treq role hub;
accept dport 3389 and ipprotocol tcp and ipsrc 198.18.3.0/24;
accept dport 443 and ipprotocol tcp and treq role hub;
accept dport 80 and ipprotocol tcp and treq role hub;
accept ipsrc 198.18.1.0/24 and dport 5432;
accept ipdest 198.18.2.0/24 and dport 6379;
tee 128 1122334455 dport 25;
drop dport 23;
drop ipprotocol udp and dport 1900;
accept tdiff dept 0 and dport 445 or dport 139;
break chr tcp_syn and not chr tcp_ack;
accept;
";

fn two_hundred() -> String {
    let mut s = String::from("accept ethertype arp;\n");
    for i in 0..199u32 {
        let _ = writeln!(
            s,
            "accept ipprotocol tcp and ipsrc 198.18.{}.0/24 and dport {};",
            i % 250,
            10000 + i
        );
    }
    s
}

fn thousand() -> String {
    let mut s = String::from("tag role id 1 default 0 enum 1 admin;\n");
    for i in 0..300u32 {
        let _ = writeln!(s, "accept dport {} and ipprotocol tcp;", 1000 + i);
    }
    for c in 0..100u32 {
        let _ = writeln!(s, "cap c{c} id {c}");
        for r in 0..7u32 {
            let _ = writeln!(
                s,
                "  accept tseq role admin and dport {};",
                20000 + c * 10 + r
            );
        }
        s.push_str(";\n");
    }
    s
}

fn ctx<'a>(
    frame: &'a [u8],
    sender: &'a [(u32, u32)],
    receiver: &'a [(u32, u32)],
) -> FrameContext<'a> {
    FrameContext {
        direction: Direction::Inbound,
        ztsrc: NodeAddress::new(0x11_1111_1111).expect("valid address"),
        ztdest: NodeAddress::new(0x22_2222_2222).ok(),
        frame,
        sender_tags: PeerTags::Known(sender),
        receiver_tags: PeerTags::Known(receiver),
        sender_capabilities: &[],
        ip_authenticated: true,
        mac_authenticated: true,
        random: 12345,
    }
}

fn bench_set(c: &mut Criterion, name: &str, rules: &RuleSet, frames: &[(&str, &str)]) {
    let mut g = c.benchmark_group(format!("evaluate/{name}"));
    g.throughput(Throughput::Elements(1));
    let spoke: &[(u32, u32)] = &[(10, 100)];
    let hub: &[(u32, u32)] = &[(10, 200)];
    for (label, desc) in frames {
        let f = frame_from_description(desc).expect("frame").frame;
        let cx = ctx(&f, spoke, hub);
        g.bench_function(*label, |b| {
            b.iter(|| evaluate(black_box(rules), black_box(&cx)))
        });
    }
    g.finish();
}

fn benches(c: &mut Criterion) {
    let twenty = compile_str(TWENTY).expect("20-rule set compiles").rules;
    assert_eq!(twenty.rule_count(), 20);
    bench_set(
        c,
        "20_rules",
        &twenty,
        &[
            (
                "ssh_syn_accepted_at_rule_8",
                "tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn",
            ),
            (
                "tcp_ack_falls_to_last_rule",
                "tcp from 198.18.0.2:40000 to 198.18.0.3:9999 ack size 1400",
            ),
        ],
    );
    let src = two_hundred();
    let two = compile_str(&src).expect("200-rule set compiles").rules;
    assert_eq!(two.rule_count(), 200);
    bench_set(
        c,
        "200_rules",
        &two,
        &[
            (
                "matched_at_rule_100",
                "tcp from 198.18.99.7:40000 to 198.18.0.3:10099 syn",
            ),
            (
                "no_match_all_200_checked",
                "tcp from 203.0.113.7:40000 to 198.18.0.3:22 syn size 1400",
            ),
        ],
    );

    let src = thousand();
    let compiled = compile_str(&src).expect("1000-rule file compiles");
    let total: usize = compiled.rules.rule_count()
        + compiled
            .rules
            .capabilities()
            .iter()
            .map(|k| skylan::rules::rule_count(k.entries()))
            .sum::<usize>();
    assert_eq!(total, 1000);
    let mut g = c.benchmark_group("compile");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(src.len() as u64));
    g.bench_function("1000_rules", |b| {
        b.iter(|| compile_str(black_box(&src)).map(|c| c.rules.rule_count()))
    });
    g.finish();
}

criterion_group!(rules, benches);
criterion_main!(rules);

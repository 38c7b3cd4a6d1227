//! Scenario tests of the whole layer: source -> compile -> evaluate, errors and warnings.

use super::describe::frame_from_description;
use super::*;
use crate::types::NodeAddress;

const A: &str = "1111111111";
const B: &str = "2222222222";

fn node(s: &str) -> NodeAddress {
    s.parse().expect("test address")
}

fn compiled(src: &str) -> Compiled {
    match compile_str(src) {
        Ok(c) => c,
        Err(e) => panic!("does not compile:\n{e}"),
    }
}

fn error(src: &str) -> Diagnostic {
    match compile_str(src) {
        Ok(_) => panic!("compiled but should not:\n{src}"),
        Err(RulesError::Source(d)) => *d,
        Err(e) => panic!("unexpected error kind: {e}"),
    }
}

/// Evaluates on one side with the given tags and capabilities.
struct Probe<'a> {
    direction: Direction,
    sender: PeerTags<'a>,
    receiver: PeerTags<'a>,
    caps: &'a [u32],
}

const OUT: Probe<'static> = Probe {
    direction: Direction::Outbound,
    sender: PeerTags::Known(&[]),
    receiver: PeerTags::Known(&[]),
    caps: &[],
};
const IN: Probe<'static> = Probe {
    direction: Direction::Inbound,
    ..OUT
};

fn decide(rules: &RuleSet, frame: &str, p: &Probe<'_>) -> Decision {
    let f = frame_from_description(frame).expect("frame description");
    let ctx = FrameContext {
        direction: p.direction,
        ztsrc: node(A),
        ztdest: Some(node(B)),
        frame: &f.frame,
        sender_tags: p.sender,
        receiver_tags: p.receiver,
        sender_capabilities: p.caps,
        ip_authenticated: f.ip_authenticated,
        mac_authenticated: f.mac_authenticated,
        random: 7,
    };
    evaluate(rules, &ctx)
}

fn verdict(rules: &RuleSet, frame: &str, p: &Probe<'_>) -> Verdict {
    decide(rules, frame, p).verdict
}

#[test]
fn zerotier_example_capabilities_and_tags_compiles_unchanged() {
    // ZeroTier's rule-compiler/examples/capabilities-and-tags.ztrules, in substance.
    let c = compiled(
        "# Drop all Ethernet frame types that are not IPv4 or IPv6\n\
         drop\n\tnot ethertype 0x0800 # IPv4\n\tnot ethertype 0x0806 # IPv4 ARP\n\tnot ethertype 0x86dd # IPv6\n;\n\
         cap ssh\n\tid 1000\n\taccept\n\t\tipprotocol tcp\n\t\tdport 22\n\t;\n;\n\
         tag department\n\tid 1000\n\tenum 100 sales\n\tenum 200 marketing\n;\n\
         accept\n\ttdiff department 0\n;\n\
         accept;\n",
    );
    assert_eq!(c.rules.rule_count(), 3);
    assert_eq!(c.rules.capabilities()[0].id, 1000);
    assert_eq!(c.names.tag("department").map(|t| t.id), Some(1000));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    assert_eq!(verdict(&c.rules, "ethertype 0x88cc", &OUT), Verdict::Drop);
    assert_eq!(
        verdict(&c.rules, "udp to 198.18.0.9:53", &OUT),
        Verdict::Accept
    );
}

#[test]
fn zerotier_faq_client_isolation() {
    let c = compiled(
        "accept ethertype arp;\n\ntag server\nid 2\nenum 0 No\nenum 1 Yes\ndefault No;\n\n\
         # if neither member is a \"server\", break\nbreak not tor server 1;\n\naccept;\n",
    );
    let server: &[(u32, u32)] = &[(2, 1)];
    assert_eq!(verdict(&c.rules, "arp", &IN), Verdict::Accept);
    // Neither is a server (both take the default, No).
    assert_eq!(verdict(&c.rules, "tcp", &IN), Verdict::Drop);
    let p = Probe {
        receiver: PeerTags::Known(server),
        ..IN
    };
    assert_eq!(verdict(&c.rules, "tcp", &p), Verdict::Accept);
}

#[test]
fn zerotier_faq_remote_desktop_only() {
    let c = compiled(
        "accept ethertype arp; # so nodes can find each other\ndrop not ipprotocol tcp;\naccept dport 3389; # Destination is RDP\n\
         drop chr tcp_syn and not chr tcp_ack; # No new TCP connections (except RDP)\naccept; # Accept what's left, returning RDP traffic\n",
    );
    let r = &c.rules;
    assert_eq!(
        verdict(r, "tcp to 198.18.0.2:3389 syn", &OUT),
        Verdict::Accept
    );
    assert_eq!(verdict(r, "tcp to 198.18.0.2:22 syn", &OUT), Verdict::Drop);
    assert_eq!(
        verdict(
            r,
            "tcp from 198.18.0.2:3389 to 198.18.0.1:50000 syn ack",
            &OUT
        ),
        Verdict::Accept
    );
    assert_eq!(verdict(r, "udp to 198.18.0.2:3389", &OUT), Verdict::Drop);
    let d = decide(r, "tcp to 198.18.0.2:22 syn", &OUT);
    assert_eq!(d.decided_by, DecidedBy::Rule(3));
    assert_eq!(c.origins.base[3].line, 4);
}

#[test]
fn zerotier_faq_gradual_permissions_with_capability() {
    let c = compiled(
        "tag admin # employee workstations\nid 1\nflag 0 yes\ndefault 0\n;\n\
         accept ethertype arp and tor admin 1;\naccept ipprotocol icmp4 and tor admin 1;\n\
         accept chr tcp_ack;\naccept dport 22 and ipprotocol tcp and tseq admin 1;\n\
         cap approved\nid 1\naccept;\n;\n\nbreak;\n",
    );
    let admin: &[(u32, u32)] = &[(1, 1)];
    let r = &c.rules;
    assert_eq!(verdict(r, "tcp to 198.18.0.2:22 syn", &IN), Verdict::Drop);
    let from_admin = Probe {
        sender: PeerTags::Known(admin),
        ..IN
    };
    assert_eq!(
        verdict(r, "tcp to 198.18.0.2:22 syn", &from_admin),
        Verdict::Accept
    );
    let approved = Probe { caps: &[1], ..IN };
    let d = decide(r, "udp to 198.18.0.2:53", &approved);
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(
        d.decided_by,
        DecidedBy::Capability {
            capability: 0,
            rule: 0
        }
    );
    // Without the capability the `break` decides.
    let d = decide(r, "udp to 198.18.0.2:53", &IN);
    assert_eq!(
        (d.verdict, d.decided_by),
        (Verdict::Drop, DecidedBy::Rule(4))
    );
}

#[test]
fn zerotier_macros_expand_with_parameters() {
    let c = compiled(
        "macro tcp_whitelist_dest_port($port)\n accept ipprotocol 6 chr tcp_syn not chr tcp_ack dport $port;\n\
         accept ipprotocol 6 chr tcp_syn chr tcp_ack sport $port;\n;\n\
         macro tcp_whitelist_end\n accept ipprotocol 6 not chr tcp_syn;\n;\n\
         accept ethertype arp;\ninclude tcp_whitelist_dest_port(22)\ninclude tcp_whitelist_dest_port(80)\ninclude tcp_whitelist_end\n",
    );
    assert_eq!(c.rules.rule_count(), 6);
    assert!(
        c.origins.base[1].via[0]
            .starts_with("macro `tcp_whitelist_dest_port` included at <rules>:9:1")
    );
    let r = &c.rules;
    assert_eq!(
        verdict(r, "tcp to 198.18.0.2:80 syn", &OUT),
        Verdict::Accept
    );
    assert_eq!(verdict(r, "tcp to 198.18.0.2:81 syn", &OUT), Verdict::Drop);
    assert_eq!(
        verdict(r, "tcp to 198.18.0.2:81 ack", &OUT),
        Verdict::Accept
    );
}

#[test]
fn seed_example_tag_assignment_tests_the_senders_tag() {
    let c = compiled(
        "tag ssh id 7 default 0;\naccept ethertype arp;\naccept ethertype ipv4 and ipprotocol tcp and dport 22 and tag ssh=1;\n",
    );
    let ssh: &[(u32, u32)] = &[(7, 1)];
    let f = "tcp to 198.18.0.2:22 syn";
    assert_eq!(verdict(&c.rules, f, &IN), Verdict::Drop);
    let p = Probe {
        sender: PeerTags::Known(ssh),
        ..IN
    };
    assert_eq!(verdict(&c.rules, f, &p), Verdict::Accept);
    // The receiver's tag does not count.
    let p = Probe {
        receiver: PeerTags::Known(ssh),
        ..IN
    };
    assert_eq!(verdict(&c.rules, f, &p), Verdict::Drop);
}

#[test]
fn not_is_plain_negation_for_every_match() {
    let c = compiled("accept not dport 80;");
    // ICMP and ARP have no ports, so `dport 80` is false and `not dport 80` is true.
    assert_eq!(verdict(&c.rules, "icmp", &OUT), Verdict::Accept);
    assert_eq!(verdict(&c.rules, "arp", &OUT), Verdict::Accept);
    assert_eq!(
        verdict(&c.rules, "tcp to 198.18.0.2:80", &OUT),
        Verdict::Drop
    );
    // ZeroTier's `not icmp T -1` quirk: here it is the plain negation.
    let c = compiled("drop not icmp 8 -1; accept;");
    assert_eq!(
        verdict(&c.rules, "icmp echo-request", &OUT),
        Verdict::Accept
    );
    assert_eq!(verdict(&c.rules, "icmp echo-reply", &OUT), Verdict::Drop);
    assert_eq!(verdict(&c.rules, "tcp", &OUT), Verdict::Drop);
}

#[test]
fn or_and_fold_left_to_right() {
    // (ipprotocol udp and tor udpserver 1) or chr multicast
    let c = compiled(
        "tag udpserver id 1000 default 0 flag 0 is_udp_server;\n\
         accept ipprotocol udp and tor udpserver 1 or chr multicast;\nbreak ipprotocol udp;\naccept;\n",
    );
    let r = &c.rules;
    assert_eq!(verdict(r, "udp to 198.18.0.2:53", &IN), Verdict::Drop);
    assert_eq!(verdict(r, "udp to 224.0.0.251:5353", &IN), Verdict::Accept);
    let server: &[(u32, u32)] = &[(1000, 1)];
    let p = Probe {
        receiver: PeerTags::Known(server),
        ..IN
    };
    assert_eq!(verdict(r, "udp to 198.18.0.2:53", &p), Verdict::Accept);
    assert_eq!(verdict(r, "tcp", &IN), Verdict::Accept);
}

#[test]
fn drop_beats_capabilities_but_break_does_not() {
    let c = compiled("cap all id 1 accept; ;\ndrop dport 23;\nbreak dport 22;\n");
    let holder = Probe { caps: &[1], ..OUT };
    assert_eq!(
        verdict(&c.rules, "tcp to 198.18.0.2:23", &holder),
        Verdict::Drop
    );
    assert_eq!(
        verdict(&c.rules, "tcp to 198.18.0.2:22", &holder),
        Verdict::Accept
    );
    assert_eq!(
        verdict(&c.rules, "tcp to 198.18.0.2:22", &OUT),
        Verdict::Drop
    );
    // A `drop` inside a capability only ends that capability.
    let c = compiled("cap a id 1 drop; ;\ncap b id 2 accept; ;\nbreak;");
    let both = Probe {
        caps: &[1, 2],
        ..OUT
    };
    let d = decide(&c.rules, "tcp", &both);
    assert_eq!(d.verdict, Verdict::Accept);
    assert_eq!(
        d.decided_by,
        DecidedBy::Capability {
            capability: 1,
            rule: 0
        }
    );
}

#[test]
fn tag_defaults_absence_and_unknown_peers() {
    let c = compiled(
        "tag d id 1 default 5;\ntag n id 2;\naccept teq d 5;\naccept treq n 0;\naccept not tseq n 3;",
    );
    let r = &c.rules;
    // Both take the default 5.
    assert_eq!(decide(r, "tcp", &IN).decided_by, DecidedBy::Rule(0));
    // Tag 2 has no default: comparisons with it are false; `not` of them true.
    let d = decide(
        r,
        "tcp",
        &Probe {
            sender: PeerTags::Known(&[(1, 4)]),
            ..IN
        },
    );
    assert_eq!(d.decided_by, DecidedBy::Rule(2));
    // Inbound: a sender whose tags are unknown holds none (defaults apply).
    let d = decide(
        r,
        "tcp",
        &Probe {
            sender: PeerTags::Unknown,
            receiver: PeerTags::Known(&[(1, 5)]),
            ..IN
        },
    );
    assert_eq!((d.decided_by, d.deferred), (DecidedBy::Rule(0), false));
}

#[test]
fn sender_defers_when_it_cannot_know_the_receivers_tags() {
    let c = compiled(
        "tag role id 1 default 0;\naccept ethertype arp;\ndrop treq role 0 and dport 22;\naccept;",
    );
    let r = &c.rules;
    let unknown = Probe {
        receiver: PeerTags::Unknown,
        ..OUT
    };
    // The decision does not depend on the receiver's tags: no deferral.
    let d = decide(r, "tcp to 198.18.0.2:80", &unknown);
    assert_eq!(
        (d.verdict, d.deferred, d.decided_by),
        (Verdict::Accept, false, DecidedBy::Rule(2))
    );
    // It does: the sender sends and leaves it to the receiver.
    let d = decide(r, "tcp to 198.18.0.2:22", &unknown);
    assert_eq!(
        (d.verdict, d.deferred, d.decided_by),
        (Verdict::Accept, true, DecidedBy::Rule(1))
    );
    // The receiver, knowing its own tag, drops it.
    assert_eq!(verdict(r, "tcp to 198.18.0.2:22", &IN), Verdict::Drop);
    // ARP needs no tags, so no special `accept ethertype arp` ordering is required.
    assert!(!decide(r, "arp", &unknown).deferred);
}

#[test]
fn tee_and_redirect() {
    let c = compiled(
        "tee 64 3333333333 dport 80;\ntee -1 1111111111;\nredirect 4444444444 dport 8080;\ndrop dport 23;\naccept;",
    );
    let d = decide(&c.rules, "tcp to 198.18.0.2:80 size 200", &OUT);
    assert_eq!(d.verdict, Verdict::Accept);
    let copies: Vec<_> = d.copies.iter().copied().collect();
    assert_eq!(copies.len(), 1, "the tee to the sender itself does nothing");
    assert_eq!(
        (copies[0].to, copies[0].payload_len),
        (node("3333333333"), 64)
    );
    let d = decide(&c.rules, "tcp to 198.18.0.2:8080", &OUT);
    assert_eq!(
        d.verdict,
        Verdict::Redirect {
            to: node("4444444444")
        }
    );
    let d = decide(&c.rules, "tcp to 198.18.0.2:23", &OUT);
    assert_eq!(d.verdict, Verdict::Drop);
    assert!(
        d.copies.is_empty(),
        "copies are not sent for dropped frames"
    );
    // Redirecting to the destination itself is a no-op.
    let c = compiled(&format!("redirect {B};\naccept;"));
    assert_eq!(decide(&c.rules, "tcp", &IN).decided_by, DecidedBy::Rule(1));
}

#[test]
fn characteristics_vlan_and_sizes() {
    let c = compiled(
        "accept chr inbound and chr ipauth,macauth;\naccept vlan 42 vlanpcp 5 vlandei 1;\naccept framesize 0-60 and chr broadcast;",
    );
    let r = &c.rules;
    assert_eq!(decide(r, "tcp", &IN).decided_by, DecidedBy::Rule(0));
    assert_eq!(verdict(r, "tcp noipauth nomacauth", &IN), Verdict::Drop);
    assert_eq!(verdict(r, "tcp vlan 42 pcp 5 dei", &OUT), Verdict::Accept);
    assert_eq!(verdict(r, "tcp vlan 42 pcp 4 dei", &OUT), Verdict::Drop);
    assert_eq!(verdict(r, "arp", &OUT), Verdict::Accept);
    assert_eq!(verdict(r, "arp size 100", &OUT), Verdict::Drop);
}

#[test]
fn empty_rule_set_drops_and_warns() {
    let c = compiled("# nothing\n");
    assert_eq!(decide(&c.rules, "arp", &OUT).decided_by, DecidedBy::Default);
    assert_eq!(c.warnings.len(), 1);
    assert!(c.warnings[0].message.contains("no rules"));
}

#[test]
fn warnings_for_unreachable_rules_and_leading_or() {
    let c = compiled("drop;\naccept ethertype arp;\naccept or dport 22;\n");
    let msgs: Vec<&str> = c.warnings.iter().map(|w| w.message.as_str()).collect();
    assert!(msgs.contains(&"this rule is never reached"), "{msgs:?}");
    assert!(
        msgs.iter().any(|m| m.contains("`or` on the first match")),
        "{msgs:?}"
    );
    let w = c
        .warnings
        .iter()
        .find(|w| w.message == "this rule is never reached")
        .unwrap();
    assert_eq!((w.line, w.col), (2, 1));
    assert!(w.to_string().starts_with("<rules>:2:1: warning: "));
}

#[test]
fn value_errors_are_located_with_hints() {
    let d = error("accept ipprotocol tcp and dport 70000;");
    assert_eq!((d.line, d.col, d.caret_len), (1, 33, 5));
    assert_eq!(d.message, "a port 70000 is out of range");
    assert_eq!(
        d.hint.as_deref(),
        Some("a port must be between 0 and 65535")
    );
    let d = error("accept\n  ethertype ipv5;");
    assert_eq!((d.line, d.col), (2, 13));
    assert_eq!(d.hint.as_deref(), Some("did you mean `ipv4`?"));
    let d = error("accept ipsrc 198.18.0.300/15;");
    assert!(d.message.contains("not an IPv4 or IPv6 address"));
    let d = error("tee 0 12345;");
    assert!(d.message.contains("not a node address"));
    let d = error("accept dport 80-22;");
    assert_eq!(
        d.hint.as_deref(),
        Some("write the lower value first: 22-80")
    );
    let d = error("accept chr tcp_syn,tcp_ak;");
    assert_eq!(d.hint.as_deref(), Some("did you mean `tcp_ack`?"));
}

#[test]
fn definition_errors() {
    let d = error("tag dept id 1 default 0;\naccept tseq dpt 1;");
    assert_eq!(d.message, "no tag named `dpt`");
    assert_eq!(d.hint.as_deref(), Some("did you mean `dept`?"));
    let d = error("tag a id 1;\ntag b id 1;");
    assert_eq!(d.message, "tag ID 1 is already used");
    assert_eq!(d.line, 2);
    let d = error("tag a id 1;\ntag A id 2;");
    assert!(d.message.contains("defined twice"));
    let d = error("cap x accept; ;");
    assert!(d.message.contains("has no `id`"));
    let d = error("tag type id 1;");
    assert!(d.message.contains("reserved word"));
    let d = error("tag t id 1 enum 1 on;\naccept tseq t off;");
    assert_eq!(d.message, "`off` is not a value of tag `t`");
    assert_eq!(d.hint.as_deref(), Some("use a number or one of: on"));
    let d = error("accept tag nope=1;");
    assert!(d.hint.unwrap().contains("tag nope id 1 default 0;"));
    let d = error("priority;");
    assert!(d.message.contains("not supported"));
    let d = error("accept not not dport 1;");
    assert!(d.message.contains("`not` twice"));
}

#[test]
fn macro_errors() {
    let d = error("macro m($p) accept dport $p; ;\ninclude m(70000)");
    assert_eq!(d.message, "a port 70000 is out of range");
    assert_eq!(
        (d.line, d.col),
        (2, 11),
        "points at the argument of the call"
    );
    let d = error("macro m($p) accept dport $q; ;\ninclude m(1)");
    assert_eq!(d.message, "macro `m` has no parameter `$q`");
    assert!(d.notes[0].starts_with("in macro `m`, included at <rules>:2:1"));
    let d = error("include nothere");
    assert!(d.message.contains("no macro named"));
    let d = error("macro a include b; ;\nmacro b include a; ;\ninclude a");
    assert!(d.message.contains("includes itself"));
    let d = error("macro m($p) accept; ;\ninclude m");
    assert!(d.message.contains("takes 1 argument(s), got 0"));
    let d = error("accept dport $p;");
    assert!(d.message.contains("not inside a macro"));
    // Fan-out without rules is bounded too.
    let mut src = String::from("macro m0 ;\n");
    for i in 1..16 {
        src += &format!(
            "macro m{i} {} ;\n",
            format!("include m{} ", i - 1).repeat(8)
        );
    }
    src += "include m15";
    let d = error(&src);
    assert!(d.message.contains("macro expansions"), "{}", d.message);
}

#[test]
fn limits_are_enforced_with_clear_errors() {
    let src = "accept dport 1;\n".repeat(512) + "accept dport 2;\n";
    let d = error(&src);
    assert_eq!(d.line, 513);
    assert!(
        d.message
            .contains("may hold 1024 entries and this rule would make it 1026"),
        "{}",
        d.message
    );
    let src = format!("cap big id 1 {} ;", "accept;".repeat(65));
    let d = error(&src);
    assert!(
        d.message.contains("capability `big` is full"),
        "{}",
        d.message
    );
    let tags: String = (0..=MAX_TAGS)
        .map(|i| format!("tag t{i} id {i};\n"))
        .collect();
    assert!(error(&tags).message.contains("too many tags"));
    // Exactly at the limit is fine.
    let src = "accept dport 1;\n".repeat(512);
    assert_eq!(compiled(&src).rules.entries().len(), 1024);
}

#[test]
fn file_includes_go_through_the_loader() {
    let mut loader = |from: &str, path: &str| -> Result<LoadedSource, String> {
        let dir = from.rsplit_once('/').map(|(d, _)| d).unwrap_or(".");
        let name = format!("{dir}/{path}");
        match name.as_str() {
            "net/common.rules" => Ok(LoadedSource {
                name,
                text: "tag role id 1 default 0;\nmacro web accept dport 80; ;\naccept ethertype arp;\n".into(),
            }),
            "net/loop.rules" => Ok(LoadedSource {
                name,
                text: "include \"loop.rules\"".into(),
            }),
            "net/bad.rules" => Ok(LoadedSource {
                name,
                text: "accept dport 99999;".into(),
            }),
            _ => Err(format!("{name}: no such file")),
        }
    };
    let c = compile(
        "net/main.rules",
        "include \"common.rules\"\ninclude web\naccept tseq role 0;",
        &mut loader,
    )
    .expect("compiles");
    assert_eq!(c.rules.rule_count(), 3);
    assert_eq!(c.origins.base[0].file, "net/common.rules");
    let e = compile("net/main.rules", "include \"loop.rules\"", &mut loader).unwrap_err();
    assert!(e.to_string().contains("include cycle"), "{e}");
    let e = compile("net/main.rules", "include \"bad.rules\"", &mut loader).unwrap_err();
    let d = e.diagnostic().unwrap();
    assert_eq!(d.file, "net/bad.rules");
    assert_eq!(
        d.notes,
        vec!["included from net/main.rules:1:1".to_string()]
    );
    let e = compile("net/main.rules", "include \"nope.rules\"", &mut loader).unwrap_err();
    assert!(e.to_string().contains("no such file"));
    let mut fan = |_: &str, path: &str| -> Result<LoadedSource, String> {
        let text = if path == "x" {
            (0..300).map(|i| format!("include \"leaf{i}\"\n")).collect()
        } else {
            String::new()
        };
        Ok(LoadedSource {
            name: path.to_string(),
            text,
        })
    };
    let e = compile("main", "include \"x\"", &mut fan).unwrap_err();
    assert!(e.to_string().contains("included files"), "{e}");
    let e = compile_str("include \"x.rules\"").unwrap_err();
    assert!(
        e.to_string()
            .contains("file includes are not available here")
    );
}

#[test]
fn explain_reports_the_deciding_line() {
    let c = compiled(
        "tag role id 1 default 0 enum 1 admin;\naccept ethertype arp;\n\ndrop chr tcp_syn and not chr tcp_ack and not tseq role admin;\naccept;",
    );
    let f = frame_from_description("tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn").unwrap();
    let ctx = FrameContext {
        direction: Direction::Inbound,
        ztsrc: node(A),
        ztdest: Some(node(B)),
        frame: &f.frame,
        sender_tags: PeerTags::Known(&[]),
        receiver_tags: PeerTags::Known(&[]),
        sender_capabilities: &[],
        ip_authenticated: true,
        mac_authenticated: true,
        random: 0,
    };
    let ex = explain::explain(&c.rules, &ctx);
    assert_eq!(ex.decision, evaluate(&c.rules, &ctx));
    let src = explain::Sources {
        origins: Some(&c.origins),
        names: Some(&c.names),
    };
    let text = explain::render_report(&c.rules, &ctx, &ex, src);
    assert!(
        text.starts_with("verdict: DROP\ndecided by rule 1 at <rules>:4:1\n    drop chr tcp_syn"),
        "{text}"
    );
    assert!(text.contains("[frame ethertype ipv4 (0x0800)]"), "{text}");
    assert!(text.contains("[sender role = 0]"), "{text}");
}

#[test]
fn explain_names_the_default_and_capabilities() {
    let c = compiled(
        "cap ssh id 5 accept dport 22; ;\ncap web id 6 accept dport 80; ;\nbreak chr tcp_syn;\n",
    );
    let f = frame_from_description("tcp to 198.18.0.3:80 syn").unwrap();
    let mut ctx = FrameContext {
        direction: Direction::Outbound,
        ztsrc: node(A),
        ztdest: Some(node(B)),
        frame: &f.frame,
        sender_tags: PeerTags::Known(&[]),
        receiver_tags: PeerTags::Known(&[]),
        sender_capabilities: &[5, 6],
        ip_authenticated: true,
        mac_authenticated: true,
        random: 0,
    };
    let src = explain::Sources {
        origins: Some(&c.origins),
        names: Some(&c.names),
    };
    let report = |ctx: &FrameContext<'_>| {
        explain::render_report(&c.rules, ctx, &explain::explain(&c.rules, ctx), src)
    };
    let text = report(&ctx);
    assert!(
        text.contains("decided by rule 0 of capability `web` (id 6) at <rules>:2:14"),
        "{text}"
    );
    assert!(
        text.contains("trying capability `ssh` (id 5) (held by the sender)"),
        "{text}"
    );
    ctx.sender_capabilities = &[5];
    let text = report(&ctx);
    assert!(text.contains("verdict: DROP\ndecided by rule 0 at <rules>:3:1 (break, and no capability of the sender accepted)"), "{text}");
    let f = frame_from_description("udp").unwrap();
    ctx.frame = &f.frame;
    let text = report(&ctx);
    assert!(
        text.contains("decided by the default: no rule accepted the frame, so it is dropped"),
        "{text}"
    );
}

// ----- compatibility with ZeroTier's compiler (docs/rules.md lists every difference) -----

#[test]
fn a_last_rule_without_its_semicolon_compiles_as_in_zerotier() {
    let c = compiled("accept ethertype arp;\naccept dport 22\n");
    assert_eq!(rule_count(c.rules.entries()), 2);
    assert_eq!(
        verdict(&c.rules, "tcp to 198.18.0.2:22", &OUT),
        Verdict::Accept
    );
    let c = compiled("accept ethertype arp;\ndrop");
    assert_eq!(rule_count(c.rules.entries()), 2);
    let c = compiled("accept;\ntag role id 1 default 2");
    assert_eq!(c.names.tag("role").and_then(|t| t.default), Some(2));
    // Only the end of the file stands in for the `;`.
    let d = error("accept ethertype arp\naccept;");
    assert_eq!(d.message, "missing `;` before `accept`");
}

#[test]
fn tee_and_watch_keep_a_written_zero_length() {
    let c = compiled("tee 0 3333333333;\nwatch -1 4444444444;\naccept;");
    let json: serde_json::Value = serde_json::from_str(&c.to_json_pretty()).unwrap();
    assert_eq!(json["config"]["rules"][0]["length"], 0);
    assert_eq!(json["config"]["rules"][1]["length"], -1);
    let stored: serde_json::Value = serde_json::from_str(&c.rules.to_json_pretty()).unwrap();
    assert_eq!(
        stored["rules"][0]["length"], 0,
        "the controller keeps it too"
    );
    // Both still copy the whole frame.
    let d = decide(&c.rules, "tcp size 300", &OUT);
    let lens: Vec<usize> = d.copies.iter().map(|c| c.payload_len).collect();
    assert_eq!(lens, vec![300, 300]);
}

#[test]
fn addresses_and_networks_appear_in_the_compiled_json_as_written() {
    let c = compiled(
        "macro obs($who) watch 64 $who ipsrc FD00:0:0::/16; ;\n\
         cap c id 7 redirect DEADBEEF11 ipdest 2001:DB8::1; accept; ;\n\
         tee -1 89E92CEEE5 ipdest 198.18.0.1/015;\n\
         include obs(89e92CEEE6)\n\
         accept ipsrc fd00::/8;",
    );
    let json: serde_json::Value = serde_json::from_str(&c.to_json_pretty()).unwrap();
    let rules = &json["config"]["rules"];
    assert_eq!(rules[0]["ip"], "198.18.0.1/015");
    assert_eq!(rules[1]["address"], "89E92CEEE5");
    assert_eq!(rules[2]["ip"], "FD00:0:0::/16");
    assert_eq!(rules[3]["address"], "89e92CEEE6");
    assert_eq!(rules[4]["ip"], "fd00::/8");
    let cap = &json["config"]["capabilities"][0]["rules"];
    assert_eq!(
        cap[0]["ip"], "2001:DB8::1/128",
        "a bare address gets its /128"
    );
    assert_eq!(cap[1]["address"], "DEADBEEF11");
    // The rule set itself (what the controller stores and nodes run) is canonical...
    let stored: serde_json::Value = serde_json::from_str(&c.rules.to_json_pretty()).unwrap();
    assert_eq!(stored["rules"][1]["address"], "89e92ceee5");
    assert_eq!(stored["rules"][2]["ip"], "fd00::/16");
    assert_eq!(
        stored["capabilities"][0]["rules"][0]["ip"],
        "2001:db8::1/128"
    );
    // ...and the spelled JSON reads back into the same rule set.
    let back = RuleSet::from_json_values(
        &json["config"]["rules"],
        &json["config"]["capabilities"],
        &json["config"]["tags"],
    )
    .unwrap();
    assert_eq!(back, c.rules);
    let d = decide(&c.rules, "udp from [fd00::1]:5 to [fd00::2]:6", &OUT);
    let to: Vec<NodeAddress> = d.copies.iter().map(|c| c.to).collect();
    assert_eq!(to, vec![node("89e92ceee6")]);
}

#[test]
fn deliberate_differences_from_zerotiers_compiler() {
    // Tag defaults of 2^31 and above keep their value (ZeroTier writes a negative one).
    let c = compiled("tag big id 1 default 3000000000;\naccept;");
    let json: serde_json::Value = serde_json::from_str(&c.to_json_pretty()).unwrap();
    assert_eq!(json["config"]["tags"][0]["default"], 3_000_000_000u64);
    // A name that is both an enum value and a flag of one tag is refused (ZeroTier reads
    // it as the flag in rules and as the enum value in `default`).
    for src in [
        "tag t id 1 enum 1 x flag 2 x default x;\naccept tseq t x;",
        "tag t id 1 flag 2 X enum 1 x;\naccept;",
    ] {
        let d = error(src);
        assert!(
            d.message
                .contains("names both an enum value and a flag of tag `t`"),
            "{d}"
        );
    }
    // A trailing `not` or `and` is an error (ZeroTier ignores it).
    assert_eq!(
        error("accept dport 22 not;").message,
        "`not` is not followed by a match"
    );
    // `#` starts a comment even inside a word (in ZeroTier only at the start of one).
    let c = compiled("accept ethertype arp#ARP only\n;\naccept dport 22#ssh\n;");
    let json: serde_json::Value = serde_json::from_str(&c.to_json_pretty()).unwrap();
    assert_eq!(json["config"]["rules"][0]["etherType"], 0x0806);
    assert_eq!(json["config"]["rules"][2]["start"], 22);
}

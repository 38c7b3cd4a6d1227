#![no_main]
//! Feeds arbitrary text to the rules compiler, the compiled-rule JSON reader and the
//! frame-description parser. Nothing may panic; whatever compiles must survive a JSON
//! round trip unchanged and evaluate identically through `evaluate` and `explain`.

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use skylan::rules::describe::frame_from_description;
use skylan::rules::explain::explain;
use skylan::rules::{Direction, FrameContext, LoadedSource, PeerTags, RuleSet, compile, evaluate};
use skylan::types::NodeAddress;

fn frames() -> &'static [Vec<u8>] {
    static FRAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    FRAMES.get_or_init(|| {
        [
            "tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn",
            "udp from [fd00::1]:5353 to [ff02::fb]:5353 vlan 42 pcp 5",
            "arp from 198.18.0.2 to 198.18.0.3",
            "icmp to 198.18.0.3 echo-request noipauth",
            "ethertype 0x88cc size 60",
        ]
        .iter()
        .filter_map(|d| frame_from_description(d).ok().map(|f| f.frame))
        .chain([vec![], vec![0xff; 13]])
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // Every file include gets this same text back, so include depth and cycle limits are
    // exercised too.
    let mut loader = |_from: &str, path: &str| {
        Ok(LoadedSource {
            name: path.to_string(),
            text: text.to_string(),
        })
    };
    match compile("fuzz.rules", &text, &mut loader) {
        Ok(c) => {
            let back = RuleSet::from_json_str(&c.rules.to_json_pretty());
            assert_eq!(back.as_ref().ok(), Some(&c.rules), "JSON round trip");
            let _ = c.to_json_pretty();
            for w in &c.warnings {
                let _ = w.to_string();
            }
            let a = NodeAddress::new(0x11_1111_1111).ok();
            let b = NodeAddress::new(0x22_2222_2222).ok();
            let (Some(a), Some(b)) = (a, b) else { return };
            for frame in frames() {
                for direction in [Direction::Outbound, Direction::Inbound] {
                    let ctx = FrameContext {
                        direction,
                        ztsrc: a,
                        ztdest: Some(b),
                        frame,
                        sender_tags: PeerTags::Known(&[(1, 1)]),
                        receiver_tags: PeerTags::Unknown,
                        sender_capabilities: &[1, 2, 1000],
                        ip_authenticated: true,
                        mac_authenticated: false,
                        random: data.len() as u32,
                    };
                    assert_eq!(explain(&c.rules, &ctx).decision, evaluate(&c.rules, &ctx));
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    let _ = RuleSet::from_json_str(&text);
    let _ = frame_from_description(&text);
});

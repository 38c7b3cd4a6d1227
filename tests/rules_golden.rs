//! Golden tests of the rules compiler: every `tests/rules/NAME.rules` is compiled and
//! its output compared with the checked-in expectation:
//!
//! - `NAME.json`: the compiled JSON (ZeroTier's compiler output shape), if it compiles;
//! - `NAME.warnings`: its rendered warnings (absent means there must be none);
//! - `NAME.err`: the rendered error, if it must not compile.
//!
//! The `zt-*` cases are rule sets ZeroTier's compiler accepts; their `config` parts are
//! what ZeroTier's own compiler (`rule-compiler.js`, 1.14) prints for the same file,
//! key for key. The others use skylan's additions or show its errors and warnings; they
//! were generated once and reviewed. After an intended
//! change, regenerate with `SKYLAN_BLESS=1 cargo test --test rules_golden` and review the
//! diff. Files under `tests/rules/lib/` are include targets, not cases.
// Tests and examples may use files, sockets, threads and processes.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::path::{Path, PathBuf};

use skylan::rules::{LoadedSource, RuleSet, compile};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rules")
}

fn read(p: &Path) -> Option<String> {
    std::fs::read_to_string(p).ok()
}

/// Loads includes relative to the including file, inside `tests/rules`.
fn loader(from: &str, path: &str) -> Result<LoadedSource, String> {
    let base = Path::new(from).parent().unwrap_or(Path::new(""));
    let name = base.join(path).display().to_string();
    read(&dir().join(&name))
        .map(|text| LoadedSource {
            name: name.clone(),
            text,
        })
        .ok_or_else(|| format!("{name}: no such file"))
}

fn check(expected_path: &Path, actual: Option<String>, bless: bool, failures: &mut Vec<String>) {
    let expected = read(expected_path);
    if bless {
        match &actual {
            Some(a) => std::fs::write(expected_path, a).expect("write golden file"),
            None => {
                let _ = std::fs::remove_file(expected_path);
            }
        }
        return;
    }
    if expected != actual {
        failures.push(format!(
            "{}:\n--- expected\n{}\n--- actual\n{}",
            expected_path.display(),
            expected.as_deref().unwrap_or("(no file)"),
            actual.as_deref().unwrap_or("(nothing)")
        ));
    }
}

#[test]
fn golden_sources_compile_to_their_expected_tables() {
    let bless = std::env::var_os("SKYLAN_BLESS").is_some();
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("tests/rules exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rules"))
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 20,
        "expected the golden cases, found {}",
        cases.len()
    );

    let mut failures = Vec::new();
    let mut compiled_ok = 0;
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let text = read(case).expect("readable case");
        let mut load = loader;
        let result = compile(name, &text, &mut load);
        let (json, warnings, err) = match &result {
            Ok(c) => {
                compiled_ok += 1;
                let warnings = (!c.warnings.is_empty()).then(|| {
                    c.warnings
                        .iter()
                        .map(|w| w.to_string())
                        .collect::<Vec<_>>()
                        .join("\n\n")
                        + "\n"
                });
                (Some(c.to_json_pretty() + "\n"), warnings, None)
            }
            Err(e) => (None, None, Some(e.to_string() + "\n")),
        };
        check(
            &case.with_extension("json"),
            json.clone(),
            bless,
            &mut failures,
        );
        check(
            &case.with_extension("warnings"),
            warnings,
            bless,
            &mut failures,
        );
        check(&case.with_extension("err"), err, bless, &mut failures);

        // The JSON form reads back into the same rule set.
        if let (Some(j), Ok(c)) = (&json, &result) {
            let v: serde_json::Value = serde_json::from_str(j).expect("valid JSON");
            let back = RuleSet::from_json_values(
                &v["config"]["rules"],
                &v["config"]["capabilities"],
                &v["config"]["tags"],
            );
            match back {
                Ok(r) if r == c.rules => {}
                other => failures.push(format!("{name}: JSON does not read back: {other:?}")),
            }
        }
    }
    assert!(compiled_ok >= 10, "too few cases compiled: {compiled_ok}");
    assert!(
        failures.is_empty(),
        "{} golden mismatch(es) (if intended, rerun with SKYLAN_BLESS=1 and review the diff):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

/// Counts allocations made by the current thread, so `evaluate` can be shown to make none.
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    pub struct Counting;

    thread_local! {
        pub static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    }

    // SAFETY: forwards to the system allocator unchanged; only counts calls.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
            // SAFETY: same contract as the caller's.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: same contract as the caller's.
            unsafe { System.dealloc(ptr, layout) }
        }
    }
}

#[global_allocator]
static ALLOCATOR: counting::Counting = counting::Counting;

#[test]
fn evaluate_does_not_allocate() {
    use skylan::rules::describe::frame_from_description;
    use skylan::rules::{Direction, FrameContext, PeerTags, evaluate};
    use skylan::types::NodeAddress;

    // A rule set that exercises every condition, tags, capabilities and copies.
    let src = read(&dir().join("every-match.rules")).expect("case exists")
        + "cap c id 9 tee -1 3333333333; accept ipprotocol udp; ;\ntee 64 4444444444;\nbreak;\n";
    let mut none = |_: &str, _: &str| Err::<LoadedSource, String>("no includes".into());
    let c = compile("every-match.rules", &src, &mut none).expect("compiles");
    let frames: Vec<Vec<u8>> = [
        "tcp from 198.18.0.2:40000 to 198.18.0.3:22 syn",
        "udp from [fd00::1]:53 to [fd00::2]:5353 vlan 42 pcp 5 dei",
        "icmp echo-request",
        "arp",
        "ethertype 0x88cc size 100",
    ]
    .iter()
    .map(|d| frame_from_description(d).expect("frame").frame)
    .collect();
    let a = NodeAddress::new(0x11_1111_1111).expect("address");
    let b = NodeAddress::new(0x22_2222_2222).ok();
    let mut decisions = 0;
    for f in &frames {
        for direction in [Direction::Outbound, Direction::Inbound] {
            let ctx = FrameContext {
                direction,
                ztsrc: a,
                ztdest: b,
                frame: f,
                sender_tags: PeerTags::Known(&[(10, 100), (11, 3)]),
                receiver_tags: PeerTags::Unknown,
                sender_capabilities: &[9],
                ip_authenticated: true,
                mac_authenticated: true,
                random: 99,
            };
            let before = counting::ALLOCATIONS.with(|c| c.get());
            let d = evaluate(&c.rules, &ctx);
            let after = counting::ALLOCATIONS.with(|c| c.get());
            assert_eq!(after, before, "evaluate allocated for {direction:?} {d:?}");
            decisions += 1;
        }
    }
    assert_eq!(decisions, 10);
}

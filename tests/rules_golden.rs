//! Golden tests of the rules compiler: every `tests/rules/NAME.rules` is compiled and
//! its output compared with the checked-in expectation:
//!
//! - `NAME.json`: the compiled JSON (ZeroTier's compiler output shape), if it compiles;
//! - `NAME.warnings`: its rendered warnings (absent means there must be none);
//! - `NAME.err`: the rendered error, if it must not compile.
//!
//! The `zt-*` expectations were written by hand from ZeroTier's documented examples and
//! compiled-rule shapes; the others were generated once and reviewed. After an intended
//! change, regenerate with `SKYLAN_BLESS=1 cargo test --test rules_golden` and review the
//! diff. Files under `tests/rules/lib/` are include targets, not cases.

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

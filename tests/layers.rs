//! The layer check: every module under `src/` may name (`crate::X`, or `super::X` from
//! a layer's root) only the layers below it, so the import graph stays a downward
//! line with no cycles:
//!
//! ```text
//! types ← wire ← crypto ← rules ← world ← node/root ← controller ← service
//!       ← sim/io ← cli ← lab ← main
//! ```
//!
//! [`LAYERS`] is the one place the order is written down. Layers on the same rank
//! (`node` and `root`, `sim` and `io`) may not import each other. Unit-test modules
//! (`#[cfg(test)] mod tests { .. }` and files declared as `#[cfg(test)] mod x;`) are
//! exempt: a test may drive a lower layer with a higher one (for example a TAP test that
//! builds a namespace with `lab`), which is not a dependency of the product.
//!
//! The check reads the source text: it drops comments and string literals, then looks
//! for `crate::name` and for `super::name` paths that climb out of the layer.
#![allow(clippy::disallowed_methods)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each layer with its rank; a layer may import only layers of a strictly lower rank.
const LAYERS: &[(&str, u32)] = &[
    ("types", 0),
    ("wire", 1),
    ("crypto", 2),
    ("rules", 3),
    ("world", 4),
    ("node", 5),
    ("root", 5),
    ("controller", 6),
    ("service", 7),
    ("sim", 8),
    ("io", 8),
    ("cli", 9),
    ("lab", 10),
    ("main", 11),
];

fn rank(layer: &str) -> Option<u32> {
    LAYERS.iter().find(|(l, _)| *l == layer).map(|(_, r)| *r)
}

#[test]
fn imports_point_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = import_graph(&src);
    let mut wrong = Vec::new();
    for ((from, to), files) in &graph {
        let (Some(rf), Some(rt)) = (rank(from), rank(to)) else {
            wrong.push(format!(
                "{from} → {to} ({}): not in the layer table",
                files.join(", ")
            ));
            continue;
        };
        if rt >= rf {
            wrong.push(format!(
                "{from} (rank {rf}) → {to} (rank {rt}) in {}",
                files.join(", ")
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that do not point downward:\n  {}",
        wrong.join("\n  ")
    );
}

#[test]
fn every_layer_folder_is_in_the_table() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for entry in std::fs::read_dir(&src).expect("read src/") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if name == "lib" {
            continue;
        }
        assert!(rank(name).is_some(), "src/{name} is not in LAYERS");
    }
}

#[test]
fn the_checker_sees_paths_and_skips_tests_and_comments() {
    let text = "use crate::{wire::Packet, types::Time};\n\
                // crate::lab in a comment\n\
                let s = \"crate::cli\"; let q = '\"'; let e = '\\''; let u = \"crate::sim\";\n\
                fn f() { super::node::Node::new(); }\n\
                #[cfg(test)]\nmod tests { use crate::lab::Lab; }\n";
    let names = layers_named(&strip(text), &["root".to_string()]);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(names, ["node", "types", "wire"]);
}

/// (from layer, to layer) → the files that make the edge.
fn import_graph(src: &Path) -> BTreeMap<(String, String), Vec<String>> {
    let mut files = Vec::new();
    collect_rs(src, &mut files);
    let test_files = test_only_files(&files);
    let mut graph: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for file in &files {
        if test_files.contains(file) {
            continue;
        }
        let module = module_path(src, file);
        let from = module[0].clone();
        let text = std::fs::read_to_string(file).expect("read a source file");
        for to in layers_named(&strip(&text), &module) {
            if to != from {
                let rel = file.strip_prefix(src).unwrap_or(file).display().to_string();
                graph.entry((from.clone(), to)).or_default().push(rel);
            }
        }
    }
    graph
}

fn collect_rs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read a source directory")
        .map(|e| e.expect("a directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_rs(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Files declared by `#[cfg(test)] mod name;` (as `name.rs` or `name/mod.rs` beside the
/// declaring module's own folder).
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("read a source file");
        let dir = match file.file_name().and_then(|n| n.to_str()) {
            Some("mod.rs") | Some("lib.rs") | Some("main.rs") => file.with_file_name(""),
            _ => file.with_extension(""),
        };
        let mut rest = text.as_str();
        while let Some(at) = rest.find("#[cfg(test)]") {
            rest = &rest[at + "#[cfg(test)]".len()..];
            let decl = rest.trim_start();
            let Some(decl) = decl.strip_prefix("mod ") else {
                continue;
            };
            let name: String = decl
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if decl[name.len()..].trim_start().starts_with(';') {
                out.insert(dir.join(format!("{name}.rs")));
                out.insert(dir.join(&name).join("mod.rs"));
            }
        }
    }
    out
}

/// `src/io/http/mod.rs` → `["io", "http"]`; `src/main.rs` → `["main"]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("a file under src/");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// The source without comments, string and char literals, and `#[cfg(test)] mod x {..}`.
fn strip(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < bytes.len() {
        let rest = &text[i..];
        if rest.starts_with("//") {
            i += rest.find('\n').unwrap_or(rest.len());
        } else if rest.starts_with("/*") {
            i += rest.find("*/").map_or(rest.len(), |e| e + 2);
        } else if rest.starts_with("r#\"") || rest.starts_with("r\"") {
            let hashes = rest[1..].chars().take_while(|c| *c == '#').count();
            let close = format!("\"{}", "#".repeat(hashes));
            let body = 2 + hashes;
            i += rest[body..]
                .find(&close)
                .map_or(rest.len(), |e| body + e + close.len());
        } else if rest.starts_with('"') {
            let mut j = 1;
            while j < rest.len() && rest.as_bytes()[j] != b'"' {
                j += if rest.as_bytes()[j] == b'\\' { 2 } else { 1 };
            }
            i += (j + 1).min(rest.len());
        } else if let Some(len) = char_literal_len(rest) {
            i += len;
        } else if let Some(after) = rest.strip_prefix("#[cfg(test)]") {
            let after = after.trim_start();
            let skipped = rest.len() - after.len();
            let inline_module = after.starts_with("mod ")
                && matches!((after.find('{'), after.find(';')), (Some(b), s) if s.is_none_or(|s| b < s));
            if inline_module {
                i += skipped + block_len(after);
            } else {
                out.push_str("#[cfg(test)]");
                i += "#[cfg(test)]".len();
            }
        } else {
            let c = rest.chars().next().expect("not at the end");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// Length of a char literal (`'x'`, `'\''`) at the start of `text`; `None` for a
/// lifetime or anything else.
fn char_literal_len(text: &str) -> Option<usize> {
    let body = text.strip_prefix('\'')?;
    if let Some(escaped) = body.strip_prefix('\\') {
        let rest = escaped.get(1..)?;
        return rest.find('\'').map(|e| e + 4);
    }
    let c = body.chars().next()?;
    body[c.len_utf8()..]
        .starts_with('\'')
        .then_some(2 + c.len_utf8())
}

/// Length of `mod x { .. }` up to its matching closing brace (braces in strings are rare
/// enough in test modules to ignore).
fn block_len(text: &str) -> usize {
    let mut depth = 0usize;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return at + 1;
                }
            }
            _ => {}
        }
    }
    text.len()
}

/// The top-level modules that `text` (the stripped source of module `module`) names.
fn layers_named(text: &str, module: &[String]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let names = rest.trim_start();
        if let Some(group) = names.strip_prefix('{') {
            let end = group.find(';').unwrap_or(group.len());
            for item in split_top(&group[..end]) {
                let name = ident(item.trim_start());
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name = ident(names);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    // `super::` climbs one module per step; from `src/x/mod.rs` one step reaches the
    // crate root, so `super::y` there names layer `y`.
    let mut rest = text;
    while let Some(at) = rest.find("super::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            rest = &rest["super::".len()..];
            continue;
        }
        let mut steps = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            steps += 1;
            rest = r;
        }
        if steps >= module.len() {
            let name = ident(rest);
            if !name.is_empty() && name != "self" {
                out.insert(name);
            }
        }
    }
    out
}

/// Splits `a::b, c::{d, e}, f` at the commas outside braces.
fn split_top(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (at, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                parts.push(&text[start..at]);
                return parts;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[start..at]);
                start = at + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

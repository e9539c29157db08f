//! The binary's modules use each other in one direction only: no two files reach each other,
//! directly or around a circle (cluster.rs, members.rs, shards.rs and up.rs once did, and
//! mr.rs with mr_bench.rs), so each can be read knowing only the ones below it.
//!
//! The scan reads crates/cli/src (each file up to its `#[cfg(test)]` module, comment lines
//! skipped), takes every `mod x;`, `crate::x…` and `super::x…` as an edge from the file's
//! module to the module it names, and fails on any cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path ("" for the crate root) of a source file relative to `src`.
fn module_of(rel: &Path) -> String {
    let parts: Vec<String> = rel
        .with_extension("")
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let parts: Vec<&str> = parts
        .iter()
        .map(String::as_str)
        .filter(|p| *p != "mod" && *p != "main" && *p != "lib")
        .collect();
    parts.join("::")
}

fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}::{child}")
    }
}

/// The deepest module of `path` (segments after `crate::` or a resolved `super::`) that is
/// a module of the crate: `ctl::group::describe` is module `ctl::group`.
fn deepest(modules: &BTreeSet<String>, base: &str, segments: &[&str]) -> Option<String> {
    let mut at = base.to_owned();
    let mut found = None;
    for s in segments {
        at = join(&at, s);
        if modules.contains(&at) {
            found = Some(at.clone());
        } else {
            break;
        }
    }
    found.or_else(|| (!base.is_empty()).then(|| base.to_owned()))
}

fn path_after<'a>(text: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    for (i, _) in text.match_indices(prefix) {
        let before = text[..i].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[i + prefix.len()..];
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        out.push(rest[..end].split("::").filter(|s| !s.is_empty()).collect());
    }
    out
}

/// Edges `module -> modules it uses` of the crate whose sources are under `src`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    collect(src, &mut files);
    let modules: BTreeSet<String> = files
        .iter()
        .map(|f| module_of(f.strip_prefix(src).unwrap()))
        .collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let me = module_of(file.strip_prefix(src).unwrap());
        let parent = me.rsplit_once("::").map_or("", |(p, _)| p).to_owned();
        let text: String = std::fs::read_to_string(file)
            .unwrap()
            .lines()
            .take_while(|l| !l.trim_start().starts_with("#[cfg(test)]"))
            .filter(|l| !l.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut uses = BTreeSet::new();
        for line in text.lines() {
            let l = line.trim_start().trim_start_matches("pub ");
            if let Some(name) = l.strip_prefix("mod ").and_then(|r| r.strip_suffix(';')) {
                uses.insert(join(&me, name.trim()));
            }
        }
        for segs in path_after(&text, "crate::") {
            uses.extend(deepest(&modules, "", &segs));
        }
        // In a `mod.rs` or the root, `super::` leaves the directory; elsewhere it names the
        // parent, whose submodules are this file's siblings.
        let is_dir_module = file.file_name().is_some_and(|n| n == "mod.rs") || me.is_empty();
        let up = if is_dir_module {
            parent.clone()
        } else {
            me.rsplit_once("::").map_or("", |(p, _)| p).to_owned()
        };
        for segs in path_after(&text, "super::") {
            uses.extend(deepest(&modules, &up, &segs).or_else(|| Some(up.clone())));
        }
        uses.remove(&me);
        graph.insert(me, uses);
    }
    graph
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read {}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A cycle of the graph, if it has one, as the modules around it.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    // Depth-first search; a module met again while still on the stack closes a cycle.
    fn visit(
        graph: &BTreeMap<String, BTreeSet<String>>,
        m: &str,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|s| s == m) {
            let mut c = stack[at..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if !done.insert(m.to_owned()) {
            return None;
        }
        stack.push(m.to_owned());
        for next in graph.get(m).into_iter().flatten() {
            if let Some(c) = visit(graph, next, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|m| visit(graph, m, &mut Vec::new(), &mut done))
}

#[test]
fn the_binarys_modules_use_each_other_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = module_graph(&src);
    // The scan must see edges, or it proves nothing.
    assert!(
        graph
            .get("ctl::members")
            .is_some_and(|u| u.contains("ctl::group")),
        "the scan found no edge from ctl::members to ctl::group: {graph:#?}"
    );
    if let Some(c) = cycle(&graph) {
        panic!(
            "modules of crates/cli use each other in a circle: {}; move what they share into \
             a module below both",
            c.join(" -> ")
        );
    }
}

#[test]
fn the_scan_catches_a_circle() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("ctl")).unwrap();
    std::fs::write(src.join("main.rs"), "mod ctl;\nmod up;\n").unwrap();
    std::fs::write(src.join("up.rs"), "use crate::ctl::group::Args;\n").unwrap();
    std::fs::write(src.join("ctl/mod.rs"), "mod group;\n").unwrap();
    std::fs::write(
        src.join("ctl/group.rs"),
        "// crate::up in a comment is no edge\nfn f() { crate::up::layout(); }\n",
    )
    .unwrap();
    let c = cycle(&module_graph(src)).expect("up -> ctl::group -> up is a circle");
    assert!(
        c.contains(&"up".to_owned()) && c.contains(&"ctl::group".to_owned()),
        "{c:?}"
    );

    // A child naming a sibling through `super::` is no circle; naming its parent is.
    std::fs::write(src.join("up.rs"), "fn g() {}\n").unwrap();
    std::fs::write(src.join("ctl/group.rs"), "use super::status::run;\n").unwrap();
    std::fs::write(src.join("ctl/status.rs"), "fn s() {}\n").unwrap();
    std::fs::write(src.join("ctl/mod.rs"), "mod group;\nmod status;\n").unwrap();
    assert_eq!(cycle(&module_graph(src)), None);
    std::fs::write(src.join("ctl/status.rs"), "use super::Command;\n").unwrap();
    assert!(cycle(&module_graph(src)).is_some());
}

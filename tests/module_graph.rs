//! The module picture: which top-level module of src/ names which (`crate::x` in a `use` or in
//! a path in code). The node drives the schedulers and the journal, and the store commits the
//! journal's rows, so none of them may lead back to the one above it: the subgraph of node,
//! deadlines, delivery, journal and store has no cycle. The store is in the set because a cycle
//! among the other four can pass through it (journal → store → journal).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const LAYERED: [&str; 5] = ["node", "deadlines", "delivery", "journal", "store"];

type Graph = BTreeMap<String, BTreeMap<String, BTreeSet<String>>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The text of a source file without its comments (doc links name modules without using them).
/// String literals are kept: a `//` inside one only hides the rest of its line.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        match (rest.find("//"), rest.find("/*")) {
            (Some(l), b) if b.is_none_or(|b| l < b) => {
                out.push_str(&rest[..l]);
                rest = rest[l..].find('\n').map_or("", |n| &rest[l + n..]);
            }
            (_, Some(b)) => {
                out.push_str(&rest[..b]);
                rest = rest[b..].find("*/").map_or("", |e| &rest[b + e + 2..]);
            }
            _ => {
                out.push_str(rest);
                rest = "";
            }
        }
    }
    out
}

fn ident(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The top-level modules `code` names: `crate::x...` and each item of `crate::{x, y::z}`.
fn references(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let after = &code[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let mut depth = 0usize;
            let mut start = true;
            for (i, c) in group.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => start = true,
                    c if c.is_whitespace() => {}
                    _ if start => {
                        start = false;
                        found.insert(ident(&group[i..]).to_string());
                    }
                    _ => {}
                }
            }
        } else {
            found.insert(ident(after).to_string());
        }
    }
    found
}

/// Module → module it names → the files naming it, for the top-level modules of `src`.
fn graph(src: &Path) -> Graph {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let top = |p: &Path| -> String {
        let rel = p.strip_prefix(src).unwrap();
        let first = rel
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        first.trim_end_matches(".rs").to_string()
    };
    let modules: BTreeSet<String> = files.iter().map(|p| top(p)).collect();
    let mut g = Graph::new();
    for file in &files {
        let from = top(file);
        if from == "main" || from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for to in references(&code(&text)) {
            if to != from && modules.contains(&to) {
                let rel = file.strip_prefix(src).unwrap().display().to_string();
                g.entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(rel);
            }
        }
    }
    g
}

/// A cycle among `within` (as the list of its modules, first repeated last), if there is one.
fn cycle(g: &Graph, within: &[&str]) -> Option<Vec<String>> {
    fn visit(
        g: &Graph,
        within: &[&str],
        m: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_string());
            return Some(c);
        }
        if !done.insert(m.to_string()) {
            return None;
        }
        path.push(m.to_string());
        for next in g.get(m).into_iter().flat_map(|e| e.keys()) {
            if within.contains(&next.as_str())
                && let Some(c) = visit(g, within, next, path, done)
            {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    within
        .iter()
        .find_map(|m| visit(g, within, m, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn node_schedulers_journal_and_store_form_no_cycle() {
    let g = graph(&src());
    if let Some(c) = cycle(&g, &LAYERED) {
        let hops: Vec<String> = c
            .windows(2)
            .map(|w| {
                let files: Vec<&str> = g[&w[0]][&w[1]].iter().map(String::as_str).collect();
                format!("{} -> {} ({})", w[0], w[1], files.join(", "))
            })
            .collect();
        panic!("module cycle:\n  {}", hops.join("\n  "));
    }
}

/// The reader sees the edges the design has (so an empty picture cannot pass the test above).
#[test]
fn the_picture_has_the_drivers_edges() {
    let g = graph(&src());
    let has = |a: &str, b: &str| g.get(a).is_some_and(|e| e.contains_key(b));
    for (a, b) in [
        ("node", "deadlines"),
        ("node", "delivery"),
        ("node", "journal"),
        ("node", "store"),
        ("store", "journal"),
    ] {
        assert!(has(a, b), "{a} -> {b} not found in {g:#?}");
    }
}

#[test]
fn the_reader_finds_grouped_and_qualified_paths_and_skips_comments() {
    let text = "use crate::{journal::Row, store, engine::{A, B}};\n\
                // crate::node::Hidden\n\
                /* crate::delivery */ fn f() { crate::deadlines::poll(); }";
    let found = references(&code(text));
    let names: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(names, ["deadlines", "engine", "journal", "store"]);
    let mut g = Graph::new();
    for (a, b) in [("journal", "store"), ("store", "journal")] {
        g.entry(a.into())
            .or_default()
            .entry(b.into())
            .or_default()
            .insert(format!("{a}.rs"));
    }
    assert_eq!(
        cycle(&g, &LAYERED),
        Some(vec!["journal".into(), "store".into(), "journal".into()])
    );
    assert_eq!(cycle(&g, &["journal", "node"]), None);
}

//! The architecture as the source states it, read from the code's own
//! paths (`use` items, grouped or not, and paths written in code):
//! - no file under `src/` (or a crate's `src/`) reaches, directly or
//!   around a circle, a file that reaches it;
//! - each top-level module uses only what docs/architecture.md's layer
//!   table says it may;
//! - each database driver is named only inside its own backend (the tests
//!   reach the daemon's database with the databases' own shells);
//! - each route's handler is in the file its path names.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A file's module path under `src/` (`store::sqlite` for
/// `src/store/sqlite/mod.rs`); None for the crate root and the binaries.
fn module_of(src: &Path, file: &Path) -> Option<Vec<String>> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    match last.trim_end_matches(".rs") {
        "mod" => {}
        name => parts.push(name.to_string()),
    }
    (!parts.is_empty() && !["bin", "lib", "main"].contains(&parts[0].as_str())).then_some(parts)
}

/// The text without comments, string and char literals (which may hold
/// anything that looks like a path).
fn code_only(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            i += 2;
            while i < b.len() && !b[i..].starts_with(b"*/") {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'r' && b[i..].starts_with(b"r#\"") {
            let end = text[i + 3..].find("\"#").map_or(b.len(), |e| i + 3 + e + 2);
            i = end;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x' or '\n'); a lifetime has no closing quote.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The code without its inline test module (`#[cfg(test)] mod tests {…}`,
/// at the end of a file by this codebase's habit), whose `super` is the
/// file itself and which is no part of the structure.
fn without_tests(code: &str) -> &str {
    let mut at = 0;
    while let Some(i) = code[at..].find("#[cfg(test)]") {
        let start = at + i;
        let rest = code[start + 12..].trim_start();
        if rest.starts_with("mod ") && rest.split(';').next().is_some_and(|decl| decl.contains('{')) {
            return &code[..start];
        }
        at = start + 12;
    }
    code
}

/// Every path a `use` item names, its groups expanded:
/// `a::{b, c::{d, e}}` gives `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    // White space only matters around `as`.
    let words: Vec<&str> = tree.split_whitespace().collect();
    let tree = words.join(" ").replace(" as ", "\u{1}");
    let tree: String = tree.chars().filter(|c| *c != ' ').collect::<String>().replace('\u{1}', " as ");
    fn walk(prefix: &str, tree: &str, out: &mut Vec<String>) {
        let Some(open) = tree.find('{') else {
            let item = tree.split(" as ").next().unwrap_or(tree);
            let item = item.trim_end_matches("::self").trim_end_matches("::*");
            out.push(format!("{prefix}{item}").trim_end_matches("::").to_string());
            return;
        };
        let head = &tree[..open];
        let inner = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
        let mut depth = 0;
        let mut start = 0;
        let mut items = Vec::new();
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&inner[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        items.push(&inner[start..]);
        for item in items.into_iter().filter(|i| !i.is_empty()) {
            if item == "self" {
                out.push(format!("{prefix}{head}").trim_end_matches("::").to_string());
            } else {
                walk(&format!("{prefix}{head}"), item, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("", &tree, &mut out);
    out
}

/// The paths a file's code names that may lead to a module of the crate.
fn named_paths(code: &str) -> Vec<String> {
    let mut paths = Vec::new();
    let mut rest = code;
    // `use` items, with their groups.
    while let Some(at) = rest.find("use ") {
        let before = rest[..at].chars().last();
        rest = &rest[at + 4..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let end = rest.find(';').unwrap_or(rest.len());
        paths.extend(expand(&rest[..end]));
    }
    // Paths written in code: `crate::x::y`, `super::x`, `child::x`.
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let starts = (bytes[i].is_ascii_alphabetic() || bytes[i] == b'_')
            && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_' || bytes[i - 1] == b':'));
        if !starts {
            i += 1;
            continue;
        }
        let end = code[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(code.len(), |e| i + e);
        let path = code[i..end].trim_end_matches(':');
        if path.contains("::") {
            paths.push(path.to_string());
        }
        i = end.max(i + 1);
    }
    paths
}

/// The files (as module paths) a file names, each path resolved to the
/// longest module of the crate it starts with.
fn resolve(from: &[String], path: &str, modules: &BTreeSet<Vec<String>>) -> Option<Vec<String>> {
    let mut segs: Vec<&str> = path.split("::").collect();
    let mut base: Vec<String> = match segs.first().copied()? {
        "crate" => {
            segs.remove(0);
            Vec::new()
        }
        "super" | "self" => {
            let mut base = from.to_vec();
            while let Some(&s) = segs.first() {
                match s {
                    "super" => {
                        base.pop();
                    }
                    "self" => {}
                    _ => break,
                }
                segs.remove(0);
            }
            base
        }
        // A child module of the file's own.
        first => {
            let mut child = from.to_vec();
            child.push(first.to_string());
            if !modules.contains(&child) {
                return None;
            }
            from.to_vec()
        }
    };
    // `super::Item` names the parent's file.
    let mut found = modules.contains(&base).then(|| base.clone());
    for seg in segs {
        base.push(seg.to_string());
        if modules.contains(&base) {
            found = Some(base.clone());
        } else {
            break;
        }
    }
    found.filter(|m| m != from)
}

/// File (module path) → the files it names, in the daemon's crate.
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    file_graph_of(&root().join("src"))
}

/// File (module path) → the files it names, in the crate whose sources are
/// under `src`.
fn file_graph_of(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    sources(src, &mut files);
    let modules: BTreeMap<Vec<String>, String> =
        files.iter().filter_map(|f| Some((module_of(src, f)?, std::fs::read_to_string(f).unwrap()))).collect();
    let known: BTreeSet<Vec<String>> = modules.keys().cloned().collect();
    let mut graph = BTreeMap::new();
    for (module, text) in &modules {
        let uses: BTreeSet<String> = named_paths(without_tests(&code_only(text)))
            .iter()
            .filter_map(|p| resolve(module, p, &known))
            .map(|m| m.join("::"))
            .collect();
        graph.insert(module.join("::"), uses);
    }
    graph
}

/// A circle in the graph, if there is one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut Vec::new(), &mut done))
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap()
}

/// docs/architecture.md's layer table: each module and what it may use
/// (`everything below` spelled out from the table's order), plus the leaves
/// any layer may use.
fn documented_layers() -> (BTreeMap<String, BTreeSet<String>>, BTreeSet<String>) {
    let doc = std::fs::read_to_string(root().join("docs/architecture.md")).unwrap();
    let names =
        |cell: &str| -> BTreeSet<String> { cell.split('`').skip(1).step_by(2).map(|s| s.trim().to_string()).collect() };
    let mut order = Vec::new();
    let mut may: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with('|')) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let [_, _, module, _, uses, ..] = cells[..] else { continue };
        let Some(module) = names(module).into_iter().next() else { continue };
        order.push(module.clone());
        may.insert(module, if uses.contains("everything below") { BTreeSet::from(["*".into()]) } else { names(uses) });
    }
    for (i, module) in order.iter().enumerate() {
        if may[module].contains("*") {
            may.insert(module.clone(), order[i + 1..].iter().cloned().collect());
        }
    }
    let leaves_line = doc.lines().find(|l| l.contains("are leaves that")).expect("the leaves sentence");
    let mut leaves = names(leaves_line.split("are leaves").next().unwrap());
    let also = doc.split("are leaves that").nth(1).unwrap().split("\n\n").next().unwrap();
    leaves.extend(names(also).into_iter().filter(|n| !n.contains(' ') && !n.contains('.') && !n.contains(':')));
    (may, leaves)
}

#[test]
fn no_file_reaches_a_file_that_reaches_it() {
    let graph = file_graph();
    assert!(graph.len() >= 100, "{} files", graph.len());
    // The reader sees grouped imports and paths in code.
    assert!(graph["store::sqlite"].contains("store::sqlite::writer"), "{:?}", graph["store::sqlite"]);
    assert!(graph["store::sqlite::writer"].contains("store::backend"), "{:?}", graph["store::sqlite::writer"]);
    assert!(graph["store"].contains("store::sqlite"), "{:?}", graph["store"]);
    assert_eq!(cycle(&graph), None, "files that reach each other");
    for krate in ["crates/cli/src", "crates/wire/src"] {
        let graph = file_graph_of(&root().join(krate));
        assert!(graph.len() >= 5, "{krate}: {graph:?}");
        assert_eq!(cycle(&graph), None, "files of {krate} that reach each other");
    }
}

#[test]
fn each_layer_uses_only_what_the_architecture_says() {
    let (may, leaves) = documented_layers();
    assert!(may.len() >= 10 && leaves.contains("sync") && leaves.contains("otel"), "{may:?} {leaves:?}");
    let mut uses: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let graph = file_graph();
    for (file, named) in &graph {
        for other in named.iter().filter(|o| top(o) != top(file)) {
            uses.entry(top(file)).or_default().insert(top(other));
        }
    }
    let mut wrong = Vec::new();
    for (module, used) in &uses {
        if leaves.contains(*module) {
            continue;
        }
        let Some(allowed) = may.get(*module) else {
            wrong.push(format!("{module} is not in docs/architecture.md's layer table"));
            continue;
        };
        for u in used.iter().filter(|u| !allowed.contains(**u) && !leaves.contains(**u)) {
            wrong.push(format!("{module} uses {u}"));
        }
    }
    assert!(wrong.is_empty(), "against docs/architecture.md: {wrong:#?}");
    // The bottom layers stand alone.
    assert!(uses.get("domain").is_none_or(|u| u.is_empty()), "{:?}", uses.get("domain"));
}

/// Files of the daemon (`src/`), the other crates and the tests naming a driver crate
/// outside `home`. (The benchmarks load and read their stores with the
/// drivers themselves: `COPY`, and queries with no store in between, are
/// what they measure the store against.)
fn driver_outside(names: &[&str], home: &str) -> Vec<String> {
    let mut files = Vec::new();
    for dir in ["src", "crates", "tests"] {
        sources(&root().join(dir), &mut files);
    }
    files
        .iter()
        .filter(|f| !f.starts_with(root().join(home)))
        .filter(|f| {
            let code = code_only(&std::fs::read_to_string(f).unwrap());
            named_paths(&code).iter().any(|p| names.contains(&p.split("::").next().unwrap()))
        })
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect()
}

#[test]
fn each_database_driver_is_named_only_in_its_backend() {
    let sqlite = driver_outside(&["rusqlite"], "src/store/sqlite");
    assert!(sqlite.is_empty(), "rusqlite outside src/store/sqlite: {sqlite:?}");
    let postgres = driver_outside(&["postgres", "tokio_postgres", "postgres_types"], "src/store/postgresql");
    assert!(postgres.is_empty(), "the PostgreSQL driver outside src/store/postgresql: {postgres:?}");
}

#[test]
fn the_reader_expands_groups_and_finds_cycles() {
    assert_eq!(expand("super::{a, b::{c, self}, d as e}"), ["super::a", "super::b::c", "super::b", "super::d"]);
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), BTreeSet::from([v.to_string()])))
        .collect();
    assert_eq!(cycle(&graph).map(|c| c.len()), Some(3));
}

/// Whether a handler file named `stem` is where a route's path points: one
/// of the path's words (`pipeline-runs`, `agents`, `container`) names the
/// file, singular or plural. The readiness probe lives with the liveness
/// one, in `health.rs`.
fn named_by(stem: &str, path: &str) -> bool {
    path.split('/')
        .filter(|w| !w.is_empty() && !w.starts_with('{'))
        .map(|w| w.trim_end_matches(".json").replace('-', "_"))
        .any(|w| w == stem || format!("{w}s") == stem || w == format!("{stem}z") || (stem == "health" && w == "readyz"))
}

#[test]
fn each_route_is_in_the_file_its_path_names() {
    let api = root().join("src/api");
    let mut routes = 0;
    let mut misplaced = Vec::new();
    for entry in std::fs::read_dir(&api).unwrap() {
        let file = entry.unwrap().path();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&file).unwrap();
        for attr in text.split("#[utoipa::path(").skip(1) {
            let path = attr.split("path = \"").nth(1).and_then(|p| p.split('"').next()).expect("a path");
            routes += 1;
            if !named_by(&stem, path) {
                misplaced.push(format!("{path} in src/api/{stem}.rs"));
            }
        }
    }
    assert!(routes >= 40, "{routes} routes");
    assert!(misplaced.is_empty(), "routes in a file their path does not name: {misplaced:#?}");
    assert!(named_by("agents", "/crews/{crew}/agents/{agent}") && !named_by("crews", "/llm-calls"));
}

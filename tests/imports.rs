//! The library's modules must not import each other in a cycle, so that each can be read, moved and
//! tested on top of what it imports. The check reads whatever is under `src/` when it runs:
//! `src/a/b.rs` is module `a::b`, `src/a/mod.rs` is `a`, `src/lib.rs` the crate root (`crate`), and
//! `main.rs` and `bin/` are binaries. An import is a path in a `use` or in code that names one of our
//! modules (through `crate::`, `self::`, `super::`, a child module, or a name a `use` bound to a
//! module), counted at the deepest module it names. A `mod` declaration is no import, and neither is
//! a module's use of the folders it sits in (`super::Problem`, the trait in `provider/mod.rs`): a
//! folder's `mod.rs` is the face its files implement and re-export. A folder using one of its files
//! is an import, so a file that reaches its folder back through any other module closes a cycle.
//! `cargo test --test imports -- --nocapture` also lists what each top-level folder or file imports;
//! the same check holds among top-level folders.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// A module as its path below the crate root; the root itself (`lib.rs`) is empty.
type ModulePath = Vec<String>;

fn shown(module: &[String]) -> String {
    if module.is_empty() {
        "crate".to_string()
    } else {
        module.join("::")
    }
}

/// A word (identifier, keyword or number), `::`, or one other character, with its line.
struct Token {
    text: String,
    line: usize,
}

/// Splits Rust source into tokens, leaving out comments (doc comments too), string, byte, C and
/// raw string literals, char literals and lifetimes: a path in any of them is no import.
fn tokens(source: &str) -> Vec<Token> {
    let c: Vec<char> = source.chars().collect();
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let word_char = |ch: char| ch.is_alphanumeric() || ch == '_';
    let (mut out, mut i, mut line) = (Vec::new(), 0, 1);
    while i < c.len() {
        let start = i;
        if at(i) == '/' && at(i + 1) == '/' {
            while i < c.len() && at(i) != '\n' {
                i += 1;
            }
        } else if at(i) == '/' && at(i + 1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                match (at(i), at(i + 1)) {
                    ('/', '*') => (depth, i) = (depth + 1, i + 2),
                    ('*', '/') => (depth, i) = (depth - 1, i + 2),
                    _ => i += 1,
                }
                if depth == 0 {
                    break;
                }
            }
        } else if let Some(end) = literal_end(&c, i) {
            i = end;
        } else if at(i) == '\'' || word_char(at(i)) {
            // A lifetime or label (`'a`) is left out; a raw identifier (`r#type`) is its word.
            let lifetime = at(i) == '\'';
            i += usize::from(lifetime);
            if at(i) == 'r' && at(i + 1) == '#' {
                i += 2;
            }
            let word_start = i;
            while word_char(at(i)) {
                i += 1;
            }
            if !lifetime {
                out.push(Token {
                    text: c[word_start..i].iter().collect(),
                    line,
                });
            }
        } else {
            let text = if at(i) == ':' && at(i + 1) == ':' {
                "::".to_string()
            } else {
                at(i).to_string()
            };
            i += text.chars().count();
            if !text.trim().is_empty() {
                out.push(Token { text, line });
            }
        }
        i = i.min(c.len());
        line += c[start..i].iter().filter(|&&ch| ch == '\n').count();
    }
    out
}

/// Where the string or char literal that starts at `i` ends (past its closing quote), if one does.
fn literal_end(c: &[char], i: usize) -> Option<usize> {
    let at = |k: usize| c.get(k).copied().unwrap_or('\0');
    let mut j = i;
    while j - i < 2 && matches!(at(j), 'b' | 'r' | 'c') {
        j += 1;
    }
    let raw = c[i..j].contains(&'r');
    let hashes = (j..c.len()).take_while(|&k| raw && at(k) == '#').count();
    j += hashes;
    let closing = match at(j) {
        '"' => '"',
        '\'' if c[i..j] == ['b'] || (i == j && (at(j + 1) == '\\' || at(j + 2) == '\'')) => '\'',
        _ => return None, // not a literal: a word, or a lifetime
    };
    let mut k = j + 1;
    while k < c.len() {
        if at(k) == '\\' && !raw {
            k += 2;
        } else if at(k) == closing && (k + 1..=k + hashes).all(|h| at(h) == '#') {
            return Some(k + 1 + hashes);
        } else {
            k += 1;
        }
    }
    Some(c.len())
}

fn text(t: &[Token], i: usize) -> &str {
    t.get(i).map_or("", |token| token.text.as_str())
}

fn is_word(s: &str) -> bool {
    s.starts_with(|ch: char| ch.is_alphabetic() || ch == '_')
}

/// Where the item that starts at `i` ends: past its `;` or its closing brace, or before the brace
/// that closes what holds it.
fn item_end(t: &[Token], mut i: usize) -> usize {
    let mut depth = 0;
    while i < t.len() {
        match text(t, i) {
            "(" | "[" | "{" => depth += 1,
            ")" | "]" | "}" if depth == 0 => return i,
            "}" if depth == 1 => return i + 1,
            ")" | "]" | "}" => depth -= 1,
            ";" if depth == 0 => return i + 1,
            _ => {}
        }
        i += 1;
    }
    i
}

/// A path in a `use` or in code, the module it is read in (its file's module, or an inline `mod`
/// block inside it) and, for a `use`, the name it binds.
struct Import {
    segments: Vec<String>,
    scope: ModulePath,
    binds: Option<String>,
    line: usize,
}

impl Import {
    fn new(segments: Vec<String>, scope: &[String], binds: Option<&str>, line: usize) -> Self {
        Import {
            segments,
            scope: scope.to_vec(),
            binds: binds.map(String::from),
            line,
        }
    }
}

/// Every path in `source`, the file of `module`, that could name a module of ours. Code under
/// `#[cfg(test)]`, such as a `mod tests` block, is left out: a test may use helpers from anywhere.
fn imports(source: &str, module: &[String]) -> Vec<Import> {
    let t = tokens(source);
    let (mut out, mut scope, mut inline) = (vec![], module.to_vec(), vec![]);
    let (mut depth, mut i) = (0usize, 0);
    while i < t.len() {
        match text(&t, i) {
            "#" if (i + 1..i + 7)
                .map(|k| text(&t, k))
                .eq(["[", "cfg", "(", "test", ")", "]"]) =>
            {
                i = item_end(&t, i + 7);
                continue;
            }
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                if inline.last() == Some(&depth) {
                    inline.pop();
                    scope.pop();
                }
            }
            "mod" if text(&t, i + 2) == "{" => {
                scope.push(text(&t, i + 1).to_string());
                inline.push(depth);
                (depth, i) = (depth + 1, i + 3);
                continue;
            }
            "use" => {
                i = use_tree(&t, i + 1, vec![], &scope, &mut out);
                continue;
            }
            "pub" if text(&t, i + 1) == "(" => {
                while i < t.len() && text(&t, i) != ")" {
                    i += 1; // `pub(in crate::a)` says who may see an item, not what it imports
                }
            }
            word if is_word(word)
                && text(&t, i + 1) == "::"
                && text(&t, i.wrapping_sub(1)) != "::" =>
            {
                let (mut segments, line) = (vec![word.to_string()], t[i].line);
                while text(&t, i + 1) == "::" && is_word(text(&t, i + 2)) {
                    segments.push(text(&t, i + 2).to_string());
                    i += 2;
                }
                out.push(Import::new(segments, &scope, None, line));
            }
            _ => {}
        }
        i += 1;
    }
    out
}

/// Reads the use tree at `i` (`a::b`, `a::{self, b::*}`, `a as b`) below the segments in `path`,
/// adding one import per path it ends in; returns where the tree ends.
fn use_tree(
    t: &[Token],
    mut i: usize,
    mut path: Vec<String>,
    scope: &[String],
    out: &mut Vec<Import>,
) -> usize {
    loop {
        let line = t.get(i).map_or(0, |token| token.line);
        match text(t, i) {
            "::" if path.is_empty() => path.push("::".to_string()), // `::name` is another crate
            "::" => {}
            "{" => {
                i += 1;
                loop {
                    match text(t, i) {
                        "}" => return i + 1,
                        ";" | "" => return i,
                        "," => i += 1,
                        _ => i = use_tree(t, i, path.clone(), scope, out).max(i + 1),
                    }
                }
            }
            "*" => {
                out.push(Import::new(path, scope, None, line));
                return i + 1;
            }
            word if is_word(word) => {
                if word != "self" || path.is_empty() {
                    path.push(word.to_string());
                }
                if text(t, i + 1) != "::" {
                    let renamed = text(t, i + 1) == "as";
                    let binds = if renamed {
                        text(t, i + 2).to_string()
                    } else {
                        path.last().cloned().unwrap_or_default()
                    };
                    out.push(Import::new(path, scope, Some(&binds), line));
                    return i + if renamed { 3 } else { 1 };
                }
            }
            _ => return i,
        }
        i += 1;
    }
}

/// The deepest module of ours that `import` names, and whether its whole path names that module;
/// `None` for a path into another crate, to an enum's variant, and so on.
fn resolve(
    import: &Import,
    modules: &BTreeSet<ModulePath>,
    aliases: &BTreeMap<String, ModulePath>,
) -> Option<(ModulePath, bool)> {
    let (first, after_first) = import.segments.split_first()?;
    let child = [import.scope.as_slice(), std::slice::from_ref(first)].concat();
    let (mut module, rest) = match first.as_str() {
        "crate" => (vec![], after_first),
        "self" => (import.scope.clone(), after_first),
        "super" => (import.scope.clone(), import.segments.as_slice()),
        _ if modules.contains(&child) => (import.scope.clone(), import.segments.as_slice()),
        name => (aliases.get(name)?.clone(), after_first),
    };
    let mut used = 0;
    for segment in rest {
        if segment == "super" {
            module.pop()?;
        } else {
            module.push(segment.clone());
            if !modules.contains(&module) {
                module.pop();
                break;
            }
        }
        used += 1;
    }
    while !modules.contains(&module) {
        module.pop()?; // an inline `mod` block counts as its file's module
    }
    Some((module, used == rest.len()))
}

/// A file of the library: its module, its path as shown, and its text.
struct SourceFile {
    module: ModulePath,
    path: String,
    text: String,
}

/// Modules (or top-level folders) and who imports whom, with one import (`file:line`) per edge.
struct Graph {
    nodes: BTreeSet<String>,
    edges: BTreeMap<(String, String), String>,
}

fn module_graph(files: &[SourceFile]) -> Graph {
    let modules: BTreeSet<ModulePath> = files.iter().map(|file| file.module.clone()).collect();
    let mut edges = BTreeMap::new();
    for file in files {
        let imports = imports(&file.text, &file.module);
        // Names a `use` binds to a whole module (`use crate::text;`), for paths such as `text::sms::f`.
        let aliases: BTreeMap<String, ModulePath> = imports
            .iter()
            .filter_map(|import| match resolve(import, &modules, &BTreeMap::new()) {
                Some((module, true)) => Some((import.binds.clone()?, module)),
                _ => None,
            })
            .collect();
        for import in &imports {
            let counted = |to: &ModulePath| !file.module.starts_with(to);
            if let Some((to, _)) = resolve(import, &modules, &aliases).filter(|(to, _)| counted(to))
            {
                let at = format!("{}:{}", file.path, import.line);
                edges.entry((shown(&file.module), shown(&to))).or_insert(at);
            }
        }
    }
    Graph {
        nodes: modules.iter().map(|module| shown(module)).collect(),
        edges,
    }
}

/// The same graph with each top-level folder or file as one node.
fn top_level(graph: &Graph) -> Graph {
    let top = |name: &str| name.split("::").next().unwrap_or(name).to_string();
    let mut edges = BTreeMap::new();
    for ((from, to), at) in &graph.edges {
        if top(from) != top(to) {
            edges
                .entry((top(from), top(to)))
                .or_insert_with(|| at.clone());
        }
    }
    Graph {
        nodes: graph.nodes.iter().map(|name| top(name)).collect(),
        edges,
    }
}

/// The cycles of the graph, each a closed path `[a, b, .., a]`, first node the least. A node is on a
/// cycle exactly when it is in a strongly connected component of more than one node; a breadth-first
/// search from it finds its shortest cycle, and nodes such a cycle passes through are not searched
/// from again: every node of every component shows, without the many cycles a component can hold.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in graph.edges.keys() {
        next.entry(from).or_default().push(to);
    }
    let (mut covered, mut cycles) = (BTreeSet::new(), vec![]);
    for start in graph.nodes.iter().map(String::as_str) {
        if covered.contains(start) {
            continue;
        }
        let (mut came_from, mut queue) = (BTreeMap::new(), VecDeque::from([start]));
        'search: while let Some(u) = queue.pop_front() {
            for &w in next.get(u).into_iter().flatten() {
                if w == start {
                    let mut path = vec![u];
                    while let Some(&before) = path.last().and_then(|last| came_from.get(last)) {
                        path.push(before);
                    }
                    path.reverse();
                    let least = (0..path.len()).min_by_key(|&k| path[k]).unwrap_or(0);
                    path.rotate_left(least);
                    path.push(path[0]);
                    covered.extend(path.iter().copied());
                    cycles.push(path.iter().map(|name| name.to_string()).collect());
                    break 'search;
                }
                if w != start && !came_from.contains_key(w) {
                    came_from.insert(w, u);
                    queue.push_back(w);
                }
            }
        }
    }
    cycles.sort();
    cycles
}

/// Counts, each cycle with the import behind each arrow and, if asked, what each node imports.
fn report(graph: &Graph, nodes: &str, cycles: &[Vec<String>], with_imports: bool) -> String {
    let (node_count, edge_count) = (graph.nodes.len(), graph.edges.len());
    let mut out = format!("{node_count} {nodes}, {edge_count} import edges; ");
    match cycles.len() {
        0 => out.push_str("no cycle\n"),
        1 => out.push_str("1 cycle:\n"),
        n => out.push_str(&format!("{n} cycles:\n")),
    }
    for cycle in cycles {
        let _ = writeln!(out, "  {}", cycle.join(" -> "));
        for pair in cycle.windows(2) {
            let at = graph
                .edges
                .get(&(pair[0].clone(), pair[1].clone()))
                .map_or("", String::as_str);
            let _ = writeln!(out, "      {} -> {}  {at}", pair[0], pair[1]);
        }
    }
    if with_imports {
        for node in &graph.nodes {
            let imported: Vec<&str> = graph
                .edges
                .keys()
                .filter(|(from, _)| from == node)
                .map(|(_, to)| to.as_str())
                .collect();
            let imported = if imported.is_empty() {
                "-".to_string()
            } else {
                imported.join(", ")
            };
            let _ = writeln!(out, "  {node}: {imported}");
        }
    }
    out
}

/// `a/b.rs` is `a::b`, `a/mod.rs` is `a`, `lib.rs` the root; `main.rs` and `bin/` are no modules.
fn module_of(relative: &Path) -> Option<ModulePath> {
    let mut parts: Vec<String> = relative
        .with_extension("")
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    match parts.as_slice() {
        [only] if only == "main" => return None,
        [first, _, ..] if first == "bin" => return None,
        [only] if only == "lib" => parts.clear(),
        [.., last] if last == "mod" => _ = parts.pop(),
        _ => {}
    }
    Some(parts)
}

/// Every `.rs` file under `src/` that is a module of the library.
fn crate_sources() -> Vec<SourceFile> {
    fn walk(dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .path();
            if path.is_dir() {
                walk(&path, found);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                found.push(path);
            }
        }
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = vec![];
    walk(&src, &mut paths);
    paths.sort();
    let mut files = vec![];
    for path in paths {
        let relative = path.strip_prefix(&src).unwrap_or(&path);
        let Some(module) = module_of(relative) else {
            continue;
        };
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        files.push(SourceFile {
            module,
            path: format!("src/{}", relative.display()),
            text,
        });
    }
    files
}

/// Enforced: two modules in a cycle can be neither understood nor moved one without the other.
#[test]
fn no_import_cycle_among_modules() {
    let graph = module_graph(&crate_sources());
    let cycles = cycles(&graph);
    let report = report(&graph, "modules", &cycles, false);
    assert!(
        cycles.is_empty(),
        "modules import each other in a cycle; each arrow names one import that makes it: move what it\n\
         imports, or the code that uses it, so that the imports between these modules point one way.\n{report}"
    );
    print!("{report}");
}

/// Enforced as well, one level up: the folders are the domains (model, routing, on call, text,
/// delivery, ...), and data flows one way through them, so no folder may reach itself back
/// through others even where their files do not.
#[test]
fn no_import_cycle_among_top_level_folders() {
    let graph = top_level(&module_graph(&crate_sources()));
    let cycles = cycles(&graph);
    let report = report(&graph, "top-level folders and files", &cycles, true);
    assert!(
        cycles.is_empty(),
        "top-level folders import each other in a cycle; each arrow names one import that makes \
         it:\n{report}"
    );
    print!("{report}");
}

mod checks_itself {
    use super::*;

    /// The graph of files written one after another, each below a line `== module`.
    fn graph(files: &str) -> Graph {
        let mut parsed: Vec<SourceFile> = vec![];
        for line in files.lines() {
            if let Some(name) = line.strip_prefix("== ") {
                let module = name
                    .split("::")
                    .filter(|s| *s != "crate")
                    .map(String::from)
                    .collect();
                parsed.push(SourceFile {
                    module,
                    path: format!("{name}.rs"),
                    text: String::new(),
                });
            } else if let Some(file) = parsed.last_mut() {
                file.text += &format!("{line}\n");
            }
        }
        module_graph(&parsed)
    }

    fn edges(graph: &Graph) -> Vec<String> {
        graph
            .edges
            .iter()
            .map(|((from, to), at)| format!("{from} -> {to} {at}"))
            .collect()
    }

    #[test]
    fn grouped_use_trees_name_each_module_they_reach() {
        let g = graph(
            "== a\n== a::b\n== c\n== d\n== e
use crate::{a::b::{self, Thing},
    c::{Other, *}, d as dee};
use ::a::x;
use std::fmt;",
        );
        assert_eq!(
            edges(&g),
            ["e -> a::b e.rs:1", "e -> c e.rs:2", "e -> d e.rs:2"]
        );
    }

    #[test]
    fn super_self_and_child_paths_resolve_from_the_files_module() {
        let g = graph(
            "== crate\nmod a;\npub mod z;\nuse ::a::x;
== a
mod b;
pub use b::Thing;
== a::b
use super::Item;
fn f() { super::super::c::g(); self::h(); }
== c
== z
mod q;
fn f() { self::q::g(); }
mod inner { use super::q::X; fn f() { super::g(); } }
== z::q
use redis::Client;",
        );
        // `a::b` using its folder `a` is no import; `a` re-exporting `b` is one.
        let found = [
            "a -> a::b a.rs:2",
            "a::b -> c a::b.rs:2",
            "z -> z::q z.rs:2",
        ];
        assert_eq!(edges(&g), found);
        assert!(cycles(&g).is_empty());
    }

    #[test]
    fn inline_paths_count_at_the_deepest_module_they_name() {
        let g = graph(
            "== routing\n== text\n== text::sms
== x
use crate::text;
fn f() {
    crate::text::sms::measure(s);
    routing::no();
    x.map(crate::routing::Route::new)
}
== y
use crate::text as t;
fn f() { t::sms::g(); }",
        );
        let found = [
            "x -> routing x.rs:5",
            "x -> text x.rs:1",
            "x -> text::sms x.rs:3",
        ];
        assert_eq!(edges(&g)[..3], found);
        assert_eq!(
            edges(&g)[3..],
            ["y -> text y.rs:1", "y -> text::sms y.rs:2"]
        );
    }

    #[test]
    fn comments_strings_and_test_code_are_no_imports() {
        let g = graph(
            r###"== a
== b
== c
== d
== e
== f
== h
== i
== j
== k
//! Reads `crate::a` for nothing.
/// See crate::b::Thing.
// crate::c
/* crate::d /* nested crate::d */ crate::d */
const S: &str = "crate::e::x \" crate::e";
const R: &str = r#"crate::f " crate::f"#;
const Q: char = '"'; fn g<'a>(x: &'a str) -> &'a str { x }
pub(in crate::h) fn seen() {}
#[cfg(test)]
mod tests { use crate::i; fn t() { crate::i::f() } }
use crate::j;"###,
        );
        assert_eq!(edges(&g), ["k -> j k.rs:11"]);
    }

    #[test]
    fn a_three_module_cycle_is_found_and_printed_with_its_arrows() {
        let g = graph(
            "== c


use crate::a::Z;
== b

fn f() { crate::c::y() }
== a
use crate::b::X;
== d
use crate::a::Z;",
        );
        assert_eq!(cycles(&g), [["a", "b", "c", "a"]]);
        let expected = "4 modules, 4 import edges; 1 cycle:
  a -> b -> c -> a
      a -> b  a.rs:1
      b -> c  b.rs:2
      c -> a  c.rs:3
";
        assert_eq!(report(&g, "modules", &cycles(&g), false), expected);
    }

    #[test]
    fn top_level_folders_collapse_their_modules() {
        let g = graph("== a\n== a::x\nuse crate::b::y;\n== b\n== b::y\nuse crate::a::Z;\n== c");
        assert_eq!(cycles(&g), Vec::<Vec<String>>::new());
        let top = top_level(&g);
        assert_eq!(
            report(&top, "nodes", &cycles(&top), true),
            "3 nodes, 2 import edges; 1 cycle:
  a -> b -> a
      a -> b  a::x.rs:1
      b -> a  b::y.rs:1
  a: b
  b: a
  c: -
"
        );
    }

    #[test]
    fn files_map_to_modules() {
        let expected = [
            ("lib.rs", Some("crate")),
            ("main.rs", None),
            ("bin/tool.rs", None),
            ("bin.rs", Some("bin")),
            ("config/mod.rs", Some("config")),
            ("config/oncall.rs", Some("config::oncall")),
            ("text/main.rs", Some("text::main")),
        ];
        for (path, module) in expected {
            assert_eq!(
                module_of(Path::new(path)).map(|m| shown(&m)).as_deref(),
                module,
                "{path}"
            );
        }
    }
}

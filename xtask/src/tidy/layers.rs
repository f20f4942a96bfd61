//! The release tool keeps its layers, as ARCHITECTURE.md draws them. Every `crate::` and `super::`
//! path in `xtask/src` is an import from one module (file) to another; these checks read them all:
//!
//! - an import never goes up a floor (main, commands, cli, local, release, aws, workspace, and
//!   progress, names and wait at the bottom);
//! - no command imports another command;
//! - there are no import circles;
//! - nothing below the commands and `cli` knows clap;
//! - only `local/process.rs` starts a long-running process (`std::process::Command`,
//!   `tokio::process`), and nothing below `release` runs a process at all, however it is spelled
//!   (xshell's `cmd!`, cargo_metadata's `MetadataCommand`, a `Command`);
//! - nothing but `wait.rs` sleeps: every wait is a `wait::pause` or a poll;
//! - nothing in `release/` or `aws/` prints;
//! - no source file is over 600 lines.
//!
//! `tidy/` itself is checked too: it is test code on the top floor (it may import anything and run
//! cargo), but its imports go into the circle check like everyone's.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The most lines a source file may have before it should be split.
const MOST_LINES: usize = 600;

/// Where a module sits: lower numbers may import higher ones, never the reverse.
fn floor(module: &str) -> (u8, &'static str) {
    let top = module.split("::").next().unwrap_or_default();
    match top {
        "main" | "tidy" => (0, "main.rs and tidy/"),
        "commands" => (1, "commands/"),
        "cli" => (2, "cli.rs"),
        "local" => (3, "local/"),
        "release" => (4, "release/"),
        "aws" => (5, "aws/"),
        "workspace" => (6, "workspace.rs"),
        _ => (7, "progress.rs, names.rs and wait.rs"),
    }
}

/// `commands/bench/lambda.rs` → `commands::bench::lambda`; `release/stack/mod.rs` →
/// `release::stack`; `main.rs` → `main`.
fn module_of(path: &str) -> String {
    let path = path.trim_end_matches(".rs");
    let path = path.strip_suffix("/mod").unwrap_or(path);
    path.replace('/', "::")
}

/// The source with line comments removed, so that prose does not read as imports.
fn code(text: &str) -> String {
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module path `text` names from `module`: `crate::a::b::Item` and `super::x::Item`, with
/// `{...}` groups opened one level.
fn paths(module: &str, text: &str) -> Vec<Vec<String>> {
    let code = code(text);
    let mut found = Vec::new();
    let parent: Vec<String> = module.split("::").map(str::to_owned).collect();
    for (prefix, base) in [
        ("crate::", Vec::new()),
        ("super::", parent[..parent.len().saturating_sub(1)].to_vec()),
    ] {
        for (at, _) in code.match_indices(prefix) {
            let before = code[..at].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
                continue;
            }
            let rest = &code[at + prefix.len()..];
            let mut segments = base.clone();
            let mut rest = rest;
            loop {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if name.is_empty() {
                    break;
                }
                segments.push(name.clone());
                rest = &rest[name.len()..];
                match rest.strip_prefix("::") {
                    Some(more) => rest = more,
                    None => break,
                }
            }
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let mut path = segments.clone();
                    path.extend(
                        item.trim()
                            .split("::")
                            .map(|s| s.trim().to_owned())
                            .filter(|s| !s.is_empty() && !s.contains([' ', '{'])),
                    );
                    found.push(path);
                }
            } else {
                found.push(segments);
            }
        }
    }
    found
}

/// What the checks find in `files` (path under `src/`, text); empty when the layers hold.
fn check(files: &[(String, String)]) -> Vec<String> {
    let modules: BTreeSet<String> = files.iter().map(|(path, _)| module_of(path)).collect();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, text) in files {
        let from = module_of(path);
        let code = code(text);
        let (from_floor, from_name) = floor(&from);
        for segments in paths(&from, text) {
            // The longest prefix that is a module of the tree: `crate::aws::s3::head_object` is
            // an import of `aws::s3`.
            let Some(to) = (1..=segments.len())
                .rev()
                .map(|n| segments[..n].join("::"))
                .find(|candidate| modules.contains(candidate))
            else {
                continue;
            };
            if to == from || from.starts_with(&format!("{to}::")) && !to.contains("::") {
                continue;
            }
            let (to_floor, to_name) = floor(&to);
            if to_floor < from_floor {
                problems.push(format!(
                    "{path}: imports {to} ({to_name}), which is above {from_name}"
                ));
            }
            let command = |module: &str| {
                module.strip_prefix("commands").map(|rest| {
                    rest.trim_start_matches("::")
                        .split("::")
                        .next()
                        .unwrap_or("")
                        .to_owned()
                })
            };
            if let (Some(a), Some(b)) = (command(&from), command(&to))
                && a != b
            {
                problems.push(format!(
                    "{path}: the command `{a}` imports {to}; commands never import each other \
                     (move what they share into a layer below them)"
                ));
            }
            edges.entry(from.clone()).or_default().insert(to);
        }
        let below_commands = from_floor > 2;
        if below_commands && (text.contains("clap::") || text.contains("use clap")) {
            problems.push(format!(
                "{path}: knows clap; only the commands and cli.rs parse flags"
            ));
        }
        let test_code = path.starts_with("tidy/");
        let spawns = ["std::process::Command", "tokio::process", "Command::new("];
        if !test_code
            && path != "local/process.rs"
            && spawns.iter().any(|spawn| names(&code, spawn))
        {
            problems.push(format!(
                "{path}: starts a process with a Command; long-running processes start through \
                 local/process.rs, and commands that run to completion through xshell"
            ));
        }
        let runs = ["xshell", "cmd!(", "MetadataCommand::new(", "Command::new("];
        if from_floor > 4 && runs.iter().any(|run| names(&code, run)) {
            problems.push(format!(
                "{path}: runs a process, which nothing below release/ does"
            ));
        }
        let prints = ["println!(", "eprintln!(", "print!(", "eprint!("];
        let quiet = path.starts_with("release/") || path.starts_with("aws/");
        if quiet && prints.iter().any(|print| names(&code, print)) {
            problems.push(format!(
                "{path}: prints; release/ and aws/ return results and report progress through \
                 Progress"
            ));
        }
        let sleeps = ["time::sleep(", "thread::sleep("];
        if !test_code && path != "wait.rs" && sleeps.iter().any(|sleep| code.contains(sleep)) {
            problems.push(format!(
                "{path}: sleeps; every wait goes through wait.rs (wait::pause, or a poll)"
            ));
        }
        let lines = text.lines().count();
        if lines > MOST_LINES {
            problems.push(format!(
                "{path}: {lines} lines, over {MOST_LINES}; split it"
            ));
        }
    }
    problems.extend(circles(&edges));
    problems
}

/// Whether `code` names `path` as a whole: `Command::new(`, but not `MetadataCommand::new(`.
fn names(code: &str, path: &str) -> bool {
    code.match_indices(path).any(|(at, _)| {
        !code[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Each import circle, once, as `a → b → a`.
fn circles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
        found: &mut BTreeSet<String>,
    ) {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle: Vec<String> = path[at..].to_vec();
            // The same circle from another start reads the same.
            let first = circle
                .iter()
                .enumerate()
                .min_by_key(|(_, n)| *n)
                .map_or(0, |(i, _)| i);
            circle.rotate_left(first);
            circle.push(circle[0].clone());
            found.insert(format!("import circle: {}", circle.join(" → ")));
            return;
        }
        if done.contains(node) {
            return;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            visit(next, edges, path, done, found);
        }
        path.pop();
        done.insert(node.to_owned());
    }
    let mut found = BTreeSet::new();
    let mut done = BTreeSet::new();
    for node in edges.keys() {
        visit(node, edges, &mut Vec::new(), &mut done, &mut found);
    }
    found.into_iter().collect()
}

pub(super) fn sources(dir: &Path, root: &Path, files: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("readable").path();
        if path.is_dir() {
            sources(&path, root, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let relative = path
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            files.push((relative, std::fs::read_to_string(&path).expect("readable")));
        }
    }
}

#[test]
fn the_release_tool_keeps_its_layers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&root, &root, &mut files);
    assert!(files.len() > 20, "the sources were found");
    assert!(
        files.iter().any(|(path, _)| path.starts_with("tidy/")),
        "tidy/ is checked too"
    );
    let problems = check(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let imports: usize = files
        .iter()
        .map(|(path, text)| paths(&module_of(path), text).len())
        .sum();
    println!(
        "layers: {} files, {imports} crate paths; no import goes up a floor, no command imports \
         another, no circles, no file over {MOST_LINES} lines",
        files.len()
    );
}

#[test]
fn the_layer_check_catches_what_it_forbids() {
    let file = |path: &str, text: &str| (path.to_owned(), text.to_owned());
    let files = [
        file("main.rs", "mod commands;"),
        file("commands/mod.rs", "pub mod deploy;\npub mod package;"),
        file("commands/package.rs", "pub fn select() {}"),
        file(
            "commands/deploy.rs",
            "use crate::commands::package::select;\n// crate::commands::status in a comment",
        ),
        file("aws/config.rs", "use crate::local::emulator::Emulator;"),
        file("local/emulator.rs", "use crate::aws::config;"),
        file("release/a.rs", "use super::b::B;"),
        file("release/b.rs", "use super::{a::A, c};"),
        file("release/c.rs", "#[derive(clap::Args)] struct C;"),
        file(
            "local/postgres.rs",
            "let c = std::process::Command::new(\"pg_ctl\");",
        ),
        file("names.rs", &"// a line\n".repeat(601)),
        file(
            "workspace.rs",
            "let m = cargo_metadata::MetadataCommand::new().exec();",
        ),
        file(
            "release/lease.rs",
            "tokio::time::sleep(POLL).await; eprintln!(\"warning\");",
        ),
        file("tidy/roles.rs", "use super::secrets::READ;"),
        file("tidy/secrets.rs", "use super::roles::documents;"),
        file(
            "tidy/features.rs",
            "let out = cmd!(sh, \"cargo tree\").read();",
        ),
    ];
    let problems = check(&files);
    let expected = [
        "commands/deploy.rs: the command `deploy` imports commands::package",
        "aws/config.rs: imports local::emulator (local/), which is above aws/",
        "release/c.rs: knows clap",
        "local/postgres.rs: starts a process with a Command",
        "names.rs: 601 lines, over 600",
        "workspace.rs: runs a process, which nothing below release/ does",
        "release/lease.rs: sleeps; every wait goes through wait.rs",
        "release/lease.rs: prints; release/ and aws/ return results",
        "import circle: tidy::roles → tidy::secrets → tidy::roles",
        "import circle: aws::config → local::emulator → aws::config",
        "import circle: release::a → release::b → release::a",
    ];
    for expected in expected {
        assert!(
            problems.iter().any(|p| p.starts_with(expected)),
            "{expected} is not among:\n{}",
            problems.join("\n")
        );
    }
    assert_eq!(problems.len(), expected.len(), "{}", problems.join("\n"));
}

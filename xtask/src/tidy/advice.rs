//! Every piece of advice the tool prints works as written where it was printed: a `cargo xtask`
//! command for something that reaches an account (deploy, status, rollback, ...) carries the flags
//! the user passed (`--local`, `--region`, `--bucket`, `--as-deployer-of`), as a `{flags}`
//! placeholder, a positional `{}` right after the environment's, or a literal `--local` where
//! only the emulator can be meant. The commands that reach no account (`package`, `stop`) and the
//! one that only AWS has (`bootstrap`) are exempt. The list of every advice line is pinned in
//! `advice.txt`, so a new one is seen in review.

use std::path::Path;

/// The commands whose advice must carry the user's account flags.
const ACCOUNT_COMMANDS: [&str; 11] = [
    "deploy",
    "rollback",
    "promote",
    "status",
    "destroy",
    "logs",
    "invoke",
    "reset-history",
    "gc",
    "publish",
    "up",
];

/// Each `cargo xtask …` command quoted in backticks in the release tool's sources, as it appears
/// once string continuations are joined: (file, command).
fn advice() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    super::layers::sources(&root, &root, &mut files);
    files.sort();
    let mut found = Vec::new();
    for (path, text) in files {
        if path.starts_with("tidy/") {
            continue;
        }
        // Prose in comments and the tests' own strings are not advice the tool prints.
        let text = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .map(|line| format!("{line}\n"))
            .collect();
        let joined = join_continuations(&code);
        for (at, _) in joined.match_indices("`cargo xtask ") {
            let rest = &joined[at + 1..];
            let Some(end) = rest.find('`') else { continue };
            found.push((path.clone(), rest[..end].to_owned()));
        }
    }
    found
}

/// The text with Rust's string continuations (`\` at a line's end, and the next line's leading
/// blanks) removed, so that a command split over lines reads whole.
fn join_continuations(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        match line.strip_suffix('\\') {
            Some(head) => {
                out.push_str(head);
                if let Some(next) = lines.peek_mut() {
                    *next = next.trim_start();
                }
            }
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// Why `command` would not work as written in the context it is printed in, if it would not.
fn problem(command: &str) -> Option<String> {
    let words: Vec<&str> = command.split_whitespace().collect();
    let name = *words.get(2)?;
    if !ACCOUNT_COMMANDS.contains(&name) {
        return None;
    }
    // Help texts name their arguments (`<service> <env>`); they are not advice to run as is.
    if command.contains('<') {
        return None;
    }
    let carries = command.contains("{flags}")
        || command.contains("--local")
        || command.contains("}{}")
        || command.ends_with("{}{}");
    (!carries).then(|| {
        format!(
            "`{command}` drops the flags the user passed: end it with {{flags}} (the command's \
             account flags), or say --local where only the emulator can be meant"
        )
    })
}

#[test]
fn every_advice_line_carries_the_users_flags() {
    let advice = advice();
    assert!(advice.len() > 20, "the advice was found: {advice:?}");
    let problems: Vec<String> = advice
        .iter()
        .filter_map(|(path, command)| Some(format!("{path}: {}", problem(command)?)))
        .collect();
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let listed: String = advice
        .iter()
        .map(|(path, command)| format!("{path}: {command}\n"))
        .collect();
    expect_test::expect_file!["advice.txt"].assert_eq(&listed);
}

#[test]
fn advice_without_the_users_flags_is_found() {
    assert!(problem("cargo xtask status").is_some());
    assert!(problem("cargo xtask deploy {} {to}").is_some());
    assert!(problem("cargo xtask deploy {} {to}{}").is_none());
    assert!(problem("cargo xtask rollback {name} {environment}{flags} --to …").is_none());
    assert!(problem("cargo xtask deploy hardware {environment} --local").is_none());
    assert!(problem("cargo xtask bootstrap --region {region}").is_none());
    assert!(problem("cargo xtask status <service> <env>").is_none());
    let joined = join_continuations("\"see `cargo xtask \\\n     status {s} {e}{flags}`\"\n");
    assert_eq!(joined, "\"see `cargo xtask status {s} {e}{flags}`\"\n");
}

//! The CLI's output, pinned: `--help` of every command, and publish's summary, deploy's change-set
//! table and report, status, promote and gc, from a real run on the stand-in workspace and the emulator.
//! Hashes, times, durations, ports, ids and paths are filtered out, so a snapshot changes only when
//! the output does. After a deliberate change: `UPDATE_EXPECT=1 scripts/test -p xtask snapshots`.

use expect_test::expect_file;
use regex_lite::Regex;

use crate::deploy::stand_in;
use crate::release::commit;
use crate::support::{Fixture, stderr, stdout, xtask};

/// `text` with what changes from run to run replaced by a name for it.
fn redact(text: &str, fixture: &Fixture) -> String {
    let mut text = text.replace(&fixture.root.display().to_string(), "<fixture>");
    for (pattern, name) in [
        // xtask-deploy-<seconds>-<pid>, before the numbers in it are taken for something else.
        (r"xtask-deploy-\d+-\d+", "xtask-deploy-<time>-<pid>"),
        (
            r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
            "<uuid>",
        ),
        (r"\b[0-9a-f]{12,64}\b", "<hex>"),
        (r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", "<date>"),
        (r"\[\d\d:\d\d:\d\d\]", "[<time>]"),
        (r"\b\d+\.\d+s\b", "<secs>s"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:<port>"),
        (r"pid \d+", "pid <pid>"),
        (r"kill \d+", "kill <pid>"),
        // The emulator's random suffixes on physical ids.
        (r"-[A-Z0-9]{12,13}\b", "-<random>"),
        (r"\(\d+ bytes\)", "(<n> bytes)"),
        (r"\d+ bytes sent", "<n> bytes sent"),
        (r"\d+ new objects, \d+ bytes", "<n> new objects, <n> bytes"),
        (r"\b\d+\.\d [kM]B\b", "<n> B"),
    ] {
        let pattern = Regex::new(pattern).expect("the filters are valid");
        text = pattern.replace_all(&text, name).into_owned();
    }
    text
}

#[test]
fn help_of_every_command() {
    let mut all = String::new();
    for command in [
        &[][..],
        &["package"],
        &["publish"],
        &["deploy"],
        &["rollback"],
        &["reset-history"],
        &["promote"],
        &["destroy"],
        &["gc"],
        &["invoke"],
        &["logs"],
        &["status"],
        &["serve"],
        &["bootstrap"],
        &["bench"],
        &["bench", "gateway"],
        &["up"],
        &["stop"],
    ] {
        let output = xtask().args(command).arg("--help").output().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        let line = ["cargo xtask", &command.join(" "), "--help"].join(" ");
        all.push_str(&format!(
            "$ {}\n{}\n",
            line.replace("  ", " "),
            stdout(&output)
        ));
    }
    expect_file!["snapshots/help.txt"].assert_eq(&all);
}

#[test]
fn publish_deploy_and_status_print_what_they_did() {
    let fixture = stand_in();
    commit(&fixture, "snapshot");
    let run = |args: &[&str]| {
        let output = fixture.xtask(args);
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        output
    };

    let published = run(&["publish", "hardware", "dev", "--local"]);
    expect_file!["snapshots/publish.txt"].assert_eq(&redact(&stdout(&published), &fixture));

    let deployed = run(&["deploy", "hardware", "dev", "--local", "--timeout", "120"]);
    let log = stderr(&deployed);
    let table: String = log
        .lines()
        .skip_while(|line| !line.starts_with("change set for "))
        .take_while(|line| line.starts_with("change set for ") || line.starts_with("  "))
        .map(|line| format!("{line}\n"))
        .collect();
    expect_file!["snapshots/change-set.txt"].assert_eq(&redact(&table, &fixture));
    expect_file!["snapshots/deploy.txt"].assert_eq(&redact(&stdout(&deployed), &fixture));

    let status = run(&["status", "hardware", "dev", "--local"]);
    expect_file!["snapshots/status.txt"].assert_eq(&redact(&stdout(&status), &fixture));

    let promoted = run(&[
        "promote",
        "hardware",
        "dev",
        "qa",
        "--allow-fast-profile",
        "--local",
        "--timeout",
        "120",
    ]);
    let status = run(&["status", "hardware", "qa", "--local"]);
    let both = format!("{}\n{}", stdout(&promoted), stdout(&status));
    expect_file!["snapshots/promote.txt"].assert_eq(&redact(&both, &fixture));

    let listed = run(&["gc", "--local", "--older-than", "0s"]);
    // One line an object, in key order, which the redacted hashes decide: sorted again here.
    let mut lines: Vec<String> = redact(&stdout(&listed), &fixture)
        .lines()
        .map(|line| format!("{line}\n"))
        .collect();
    let summary = lines.pop().unwrap_or_default();
    lines.sort();
    expect_file!["snapshots/gc.txt"].assert_eq(&(lines.concat() + &summary));
}

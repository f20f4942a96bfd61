//! `logs --local`: what the local runtime wrote to the emulator's CloudWatch Logs, rendered; one
//! request's lines with `--request`; a function that never ran is said, not an error.

use serde_json::Value;

use crate::deploy::{deployed, stand_in};
use crate::support::{stderr, stdout};

#[test]
fn logs_show_what_the_local_runtime_wrote() {
    let fixture = stand_in();
    // Nothing deployed, so nothing ever ran.
    let output = fixture.xtask(&["logs", "hardware", "dev", "--local"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "hardware-dev-apigateway-execute has not run yet: its log group \
         /aws/lambda/hardware-dev-apigateway-execute does not exist\n"
    );

    deployed(&fixture, &[]);
    let invoked = fixture.xtask(&[
        "invoke",
        "hardware",
        "dev",
        "GET",
        "/v1/misc/uuid",
        "--local",
    ]);
    assert!(invoked.status.success(), "{}", stderr(&invoked));

    let output = fixture.xtask(&["logs", "hardware", "dev", "--local", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let lines: Vec<Value> = stdout(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    let reports: Vec<&Value> = lines
        .iter()
        .filter(|l| l["raw"].as_str().unwrap().starts_with("REPORT RequestId: "))
        .collect();
    // The deploy's probe and the invocation, each summarised.
    assert!(reports.len() >= 2, "{lines:#?}");
    let last = reports.last().unwrap();
    assert!(
        last["text"].as_str().unwrap().contains(" REPORT  "),
        "{last:#}"
    );
    assert!(last["text"].as_str().unwrap().contains(" ms"), "{last:#}");

    // One request's lines only.
    let id = last["request_id"].as_str().unwrap();
    let output = fixture.xtask(&["logs", "hardware", "dev", "--local", "--request", id]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.contains(&id[..8]), "{text}");

    let output = fixture.xtask(&["logs", "hardware", "dev", "--local", "--since", "yesterday"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("\"yesterday\" is neither a duration"),
        "{}",
        stderr(&output)
    );
}

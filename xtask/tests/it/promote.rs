//! `promote` on the emulator: qa gets exactly the keys and templates dev runs, with nothing built
//! and no artifact PUT, records where the release came from, and refuses what it cannot promote.

use serde_json::Value;

use crate::deploy::{
    actions_during, cloudformation, deployed, key, lambda_get, release, runtime, s3, stand_in,
};
use crate::release::{commit, refused};
use crate::support::{Fixture, stderr, stdout};

fn promote(fixture: &Fixture, args: &[&str]) -> std::process::Output {
    let mut all = vec!["promote"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--local", "--timeout", "120"]);
    fixture
        .command(&all)
        .output()
        .expect("the xtask binary runs")
}

/// The template body CloudFormation holds for `stack`.
fn template_of(endpoint: &str, stack: &str) -> String {
    let client = cloudformation(endpoint);
    runtime()
        .block_on(client.get_template().stack_name(stack).send())
        .unwrap()
        .template_body()
        .unwrap()
        .to_owned()
}

#[test]
fn promote_moves_what_dev_runs_to_qa_without_building_or_uploading() {
    let fixture = stand_in();
    release(&fixture, "tested in dev");
    commit(&fixture, "tested in dev");
    let (dev, _) = deployed(&fixture, &[]);
    let (endpoint, _) = fixture.emulator().unwrap();

    // What promote must not use: a workspace that no longer builds, and a template edited since.
    let main = fixture.root.join("services/hardware/src/main.rs");
    let source = std::fs::read_to_string(&main).unwrap();
    std::fs::write(
        &main,
        format!("compile_error!(\"promote built the code\");\n{source}"),
    )
    .unwrap();
    let template = fixture
        .root
        .join("cloudformation/hardware-environment.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(
        &template,
        format!("{text}\n# edited after dev was deployed\n"),
    )
    .unwrap();

    // dev builds the fast profile; qa runs only release builds unless asked.
    let text = stdout(&fixture.xtask(&["status", "hardware", "dev", "--local"]));
    assert!(text.contains(", fast profile)"), "{text}");
    let output = promote(&fixture, &["hardware", "dev", "qa"]);
    refused(
        &output,
        &format!(
            "dev runs {}, built with the fast profile, and qa runs only release builds",
            key(&dev)
        ),
    );
    assert!(stderr(&output).contains("--allow-fast-profile; nothing was changed"));
    let qa = fixture.xtask(&["status", "hardware", "qa", "--local", "--json"]);
    let qa: Value = serde_json::from_str(&stdout(&qa)).unwrap();
    assert_eq!(qa["status"], Value::Null, "qa was not created: {qa:#}");

    let promote_fast = ["hardware", "dev", "qa", "--allow-fast-profile", "--json"];
    let mut output = None;
    let actions = actions_during(&fixture, || {
        output = Some(promote(&fixture, &promote_fast));
    });
    let output = output.unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_str(&stdout(&output)).unwrap();
    let qa = &report["stacks"][0];
    assert_eq!(qa["stack"], "hardware-qa");
    assert_eq!(qa["outcome"], "created", "{report:#}");
    assert_eq!(qa["artifact_keys"], dev["artifact_keys"]);
    assert_eq!(qa["probes"]["result"], "passed", "{report:#}");
    assert_eq!(report["uploaded"], 0);

    // Nothing was put under lambdas/ or cloudformation/: only the lock and the history were written.
    let puts: Vec<&String> = actions.iter().filter(|a| a.starts_with("PUT ")).collect();
    assert!(
        puts.iter()
            .all(|a| a.contains("/locks/") || a.contains("/deployments/")),
        "{puts:#?}"
    );
    assert!(
        puts.iter()
            .any(|a| a.contains("/deployments/hardware-qa.json")),
        "{puts:#?}"
    );

    // Lambda runs dev's zip in qa, from dev's template as the bucket holds it.
    let function = lambda_get(&fixture, "hardware-qa-apigateway-execute");
    let location = function["Code"]["Location"].as_str().unwrap();
    assert!(location.contains(&key(&dev)), "{location}");
    let qa_template = template_of(&endpoint, "hardware-qa");
    assert_eq!(qa_template, template_of(&endpoint, "hardware-dev"));
    assert!(!qa_template.contains("edited after dev was deployed"));

    // status says where it came from, in both forms.
    let status = fixture.xtask(&["status", "hardware", "qa", "--local", "--json"]);
    assert!(status.status.success(), "{}", stderr(&status));
    let status: Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(status["promoted_from"], "dev", "{status:#}");
    assert_eq!(status["history"][0]["command"], "promote");
    assert_eq!(status["history"][0]["promoted_from"], "dev");
    assert_eq!(status["functions"][0]["profile"], "fast", "{status:#}");
    let text = stdout(&fixture.xtask(&["status", "hardware", "qa", "--local"]));
    assert!(text.contains("promoted from dev"), "{text}");

    // Again: qa already runs it, so nothing changes and nothing is recorded.
    let again = promote(&fixture, &promote_fast);
    assert!(again.status.success(), "{}", stderr(&again));
    let again: Value = serde_json::from_str(&stdout(&again)).unwrap();
    assert_eq!(again["stacks"][0]["outcome"], "unchanged", "{again:#}");
}

#[test]
fn promote_refuses_what_it_cannot_promote() {
    let fixture = stand_in();
    for (args, message) in [
        (
            &["hardware", "dev", "staging"][..],
            "unknown environment `staging`",
        ),
        (
            &["hardware", "dev", "dev"],
            "dev is both where the release comes from",
        ),
        (
            &["hardware", "qa"],
            "name the environment to promote from and the one to promote to",
        ),
        (&["payments", "dev", "qa"], "unknown service `payments`"),
    ] {
        refused(&promote(&fixture, args), message);
    }

    commit(&fixture, "the release");
    let (dev, _) = deployed(&fixture, &[]);
    refused(
        &promote(&fixture, &["hardware", "production", "qa"]),
        "nothing is deployed to production: stack hardware-production does not exist",
    );

    // A release whose zip is gone from the bucket is refused before anything changes.
    let (endpoint, _) = fixture.emulator().unwrap();
    let bucket = "biometrix-infrastructure-us-west-2";
    let client = s3(&endpoint);
    runtime()
        .block_on(client.delete_object().bucket(bucket).key(key(&dev)).send())
        .unwrap();
    let output = promote(&fixture, &["hardware", "dev", "qa"]);
    refused(
        &output,
        &format!("s3://{bucket}/{} does not exist", key(&dev)),
    );
    assert!(
        stderr(&output).contains("nothing was changed"),
        "{}",
        stderr(&output)
    );
    let qa = fixture.xtask(&["status", "hardware", "qa", "--local", "--json"]);
    let qa: Value = serde_json::from_str(&stdout(&qa)).unwrap();
    assert_eq!(qa["status"], Value::Null, "qa was not created: {qa:#}");
}

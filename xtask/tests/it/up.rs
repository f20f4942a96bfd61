//! `up`: the stand-in's published arm64 zip, deployed to the emulator, run under qemu behind the
//! local API Gateway: both prefixes, a crash, parallel requests, redeploys picked up without a
//! restart, and the bad inputs.

use std::process::Child;
use std::sync::mpsc;
use std::time::Duration;

use crate::deploy::{deployed, release, stand_in};
use crate::support::{Fixture, call, free_port, read_until, spawn_until, stderr};

/// `up hardware dev --local` on `port`, once it says it is serving; the channel of its later
/// stdout and stderr lines.
fn up(fixture: &Fixture, port: u16) -> (Child, mpsc::Receiver<String>) {
    let (child, lines, _) = up_in(fixture, "dev", port);
    (child, lines)
}

/// `up hardware <environment> --local` on `port`, as [`up`], with what it said until it served.
pub fn up_in(
    fixture: &Fixture,
    environment: &str,
    port: u16,
) -> (Child, mpsc::Receiver<String>, String) {
    let port_text = port.to_string();
    let command = fixture.command(&[
        "up",
        "hardware",
        environment,
        "--local",
        "--port",
        &port_text,
    ]);
    let (child, seen, lines) = spawn_until(
        command,
        true,
        "serving the deployed zips",
        Duration::from_secs(120),
    );
    assert!(
        seen.contains(&format!(
            "http://127.0.0.1:{port}/v1  http://127.0.0.1:{port}/hardware  (arm64 "
        )),
        "{seen}"
    );
    (child, lines, seen)
}

/// One GET; the status and the body.
fn get(port: u16, path: &str) -> (u16, String) {
    let answer = call(port, "GET", path, None, None);
    let body = String::from_utf8_lossy(&answer.body).into_owned();
    (answer.status, body)
}

/// The first line of a 200's body: the release that answered and the path it was given.
pub fn answered(port: u16, path: &str) -> String {
    let (status, body) = get(port, path);
    assert_eq!(status, 200, "{path}: {body}");
    body.lines().next().unwrap_or_default().to_owned()
}

/// Waits (up to a minute) until `path` is answered by `release`: up checks for deploys each second.
fn until_answered_by(port: u16, path: &str, release: &str) {
    for _ in 0..120 {
        let (status, body) = get(port, path);
        if status == 200 && body.starts_with(&format!("{release} ")) {
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!(
        "{path} was never answered by {release}: {:?}",
        get(port, path)
    );
}

/// The messages of a log group in the fixture's emulator, once one contains `awaited` (up sends
/// them from a thread of its own).
fn logged(fixture: &Fixture, group: &str, awaited: &str) -> Vec<String> {
    let (endpoint, _) = fixture.emulator().unwrap();
    let logs = aws_sdk_cloudwatchlogs::Client::new(&crate::deploy::sdk(&endpoint));
    let runtime = crate::deploy::runtime();
    let mut messages = Vec::new();
    for _ in 0..50 {
        messages = runtime
            .block_on(logs.filter_log_events().log_group_name(group).send())
            .map(|found| {
                found
                    .events()
                    .iter()
                    .filter_map(|e| e.message().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if messages.iter().any(|m: &String| m.contains(awaited)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    messages
}

pub fn stop(mut child: Child) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "up ended with {status}");
}

#[test]
fn up_serves_the_deployed_zip_and_follows_redeploys() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    let port = free_port();
    let (child, log) = up(&fixture, port);

    // Both custom domains' paths, as API Gateway delivers them, to the published code.
    assert_eq!(answered(port, "/v1/misc/time"), "first /v1/misc/time");
    assert_eq!(
        answered(port, "/hardware/misc/time/"),
        "first /hardware/misc/time/"
    );
    let (_, body) = get(port, "/v1/misc/time");
    assert!(
        body.contains("AWS_LAMBDA_FUNCTION_NAME=hardware-dev-apigateway-execute"),
        "{body}"
    );
    // The secrets deploy passed, as ARNs of the emulator's; what it could not resolve, filled in.
    for filled in [
        "ACCESSORY_USER_POOL_ID=us-west-2_",
        "DATABASE_SECRET_ARN=arn:aws:secretsmanager:us-west-2:",
        "SERVICE_TOKEN_SECRET_ARN=arn:aws:secretsmanager:us-west-2:",
    ] {
        assert!(body.contains(filled), "{filled} in {body}");
    }
    assert!(!body.contains("ACCESSORY_CLIENT_ID=\n"), "{body}");
    assert!(
        body.contains("FIRMWARE_TABLE=hardware-dev-firmware"),
        "Lambda's environment: {body}"
    );

    // A base64 body arrives as its bytes; one over Lambda's 6 MB is API Gateway's 502.
    let binary = call(port, "GET", "/v1/binary", None, None);
    assert_eq!(binary.body, b"\x00\x9f\xff", "{}", binary.head);
    assert_eq!(get(port, "/v1/big").0, 502);

    // Lambda's log lines and the function's own are in the emulator's log group.
    let logged = logged(
        &fixture,
        "/aws/lambda/hardware-dev-apigateway-execute",
        "REPORT RequestId",
    );
    for expected in [
        "START RequestId: ",
        "END RequestId: ",
        "REPORT RequestId: ",
        "Billed Duration: ",
        "Init Duration: ",
        r#"{"message": "first started"}"#,
    ] {
        assert!(
            logged.iter().any(|line| line.contains(expected)),
            "{expected} in {logged:#?}"
        );
    }

    // A crash mid-request is API Gateway's 502; the next request gets a fresh instance.
    let (status, body) = get(port, "/v1/crash");
    assert_eq!(
        (status, body.as_str()),
        (502, r#"{"message":"Internal server error"}"#)
    );
    assert_eq!(answered(port, "/v1/after"), "first /v1/after");

    // An idle instance that died is replaced before a request is handed to it.
    let killed = kill_instances(child.id());
    assert!(killed > 0, "an idle instance was running");
    assert_eq!(answered(port, "/v1/after"), "first /v1/after");

    // A request too large for API Gateway and Lambda is refused before the function sees it, in
    // the contract's shape, and the gateway lives on: a length nothing could allocate (which
    // once took `up` down), and a body over Lambda's 6 MB.
    // (Only the head is sent: the gateway answers from it, and closes without reading a body.)
    for head in ["Content-Length: 100000000000", "Content-Length: 7340032"] {
        let answer = raw(
            port,
            &format!("POST /v1/x HTTP/1.1\r\nHost: x\r\n{head}\r\n\r\n"),
        );
        assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
        assert!(
            answer.contains("access-control-allow-origin: *"),
            "{answer}"
        );
        assert!(
            answer.ends_with(r#"{"message":"Request too large"}"#),
            "{answer}"
        );
    }
    let long = raw(
        port,
        &format!("GET /v1/{} HTTP/1.1\r\n\r\n", "a".repeat(11_000)),
    );
    assert!(long.starts_with("HTTP/1.1 414 "), "{long}");
    assert_eq!(answered(port, "/v1/after"), "first /v1/after");

    // Requests at once get instances of their own.
    let parallel: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || answered(port, "/v1/slow")))
        .collect();
    for request in parallel {
        assert_eq!(request.join().unwrap(), "first /v1/slow");
    }

    // Past the function's timeout (lowered to a second, published and made live, as a console
    // change would: API Gateway invokes the live alias, whose version's configuration is fixed)
    // is API Gateway's 504; the instance is discarded and the next request gets a fresh one.
    let (endpoint, _) = fixture.emulator().unwrap();
    let lambda = aws_sdk_lambda::Client::new(&crate::deploy::sdk(&endpoint));
    let function = "hardware-dev-apigateway-execute";
    let runtime = crate::deploy::runtime();
    let lower = lambda
        .update_function_configuration()
        .function_name(function)
        .timeout(1)
        .send();
    runtime.block_on(lower).unwrap();
    let published = runtime
        .block_on(lambda.publish_version().function_name(function).send())
        .unwrap();
    let live = lambda
        .update_alias()
        .function_name(function)
        .name("live")
        .function_version(published.version().unwrap())
        .send();
    runtime.block_on(live).unwrap();
    let mut timed_out = None;
    for _ in 0..60 {
        let (status, body) = get(port, "/v1/stuck");
        if status == 504 {
            timed_out = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        timed_out.as_deref(),
        Some(r#"{"message":"Endpoint request timed out"}"#),
        "the lowered timeout was never applied"
    );
    assert_eq!(answered(port, "/v1/after"), "first /v1/after");

    // A redeploy switches the code that answers, without restarting up.
    release(&fixture, "second");
    deployed(&fixture, &[]);
    until_answered_by(port, "/v1/x", "second");

    // A function that fails init is a 502 on every request, until a fixed deploy.
    release(&fixture, "broken-init");
    // Its probes fail; --no-rollback leaves it deployed, so up serves it.
    let output = crate::deploy::deploy(&fixture, &["--no-rollback"]);
    assert!(!output.status.success(), "{}", stderr(&output));
    let mut broken = false;
    for _ in 0..120 {
        if get(port, "/v1/x").0 == 502 {
            broken = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(broken, "the broken release was never served");
    release(&fixture, "fixed");
    deployed(&fixture, &[]);
    until_answered_by(port, "/v1/x", "fixed");

    // The pools up made are this environment's own, apart from serve's.
    let pools = crate::deploy::emulator_post(
        &fixture,
        "AWSCognitoIdentityProviderService.ListUserPools",
        "cognito-idp",
        r#"{"MaxResults": 60}"#,
    );
    assert!(
        pools.contains("\"hardware-dev-accessoryuserpool\"") && !pools.contains("-local-"),
        "{pools}"
    );

    // The emulator dies: up says so once, and keeps serving the code it last fetched.
    let (_, emulator) = fixture.emulator().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-KILL", &emulator.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(answered(port, "/v1/y"), "fixed /v1/y");

    stop(child);
    let log: Vec<String> = log.try_iter().collect();
    let starts = log.iter().filter(|l| l.contains("START instance")).count();
    assert!(
        starts >= 4,
        "fresh instances after the crash, for parallel requests and each release:\n{}",
        log.join("\n")
    );
    // Each value filled in is printed, for scripts; the pool is this environment's own.
    let filled = log
        .iter()
        .find(|l| l.contains("filled in locally, since the emulator could not resolve them: "))
        .unwrap_or_else(|| panic!("{}", log.join("\n")));
    for value in [
        " ACCESSORY_CLIENT_ID=",
        " ACCESSORY_JWKS_URL=http://127.0.0.1:",
        " ACCESSORY_TOKEN_ISSUER=https://cognito-idp.us-west-2.amazonaws.com/us-west-2_",
        " ACCESSORY_USER_POOL_ID=us-west-2_",
    ] {
        assert!(filled.contains(value), "{value} in {filled}");
    }
    assert!(
        log.iter().any(|l| l.contains("REPORT RequestId: ")),
        "{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("init failed: the broken-init release never starts")),
        "{}",
        log.join("\n")
    );
    let gone: Vec<&String> = log
        .iter()
        .filter(|l| l.contains("is gone, and the stacks with it"))
        .collect();
    assert_eq!(
        gone.len(),
        1,
        "said once, not every second:\n{}",
        log.join("\n")
    );
    assert!(
        gone[0].contains("so this keeps serving the code it last fetched"),
        "{}",
        gone[0]
    );
}

/// Sends `head` as it is, and reads what comes back until the gateway closes.
fn raw(port: u16, head: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.write_all(head.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Kills every function instance the `up` process `up` runs (its children that run a
/// `bootstrap`); how many there were.
fn kill_instances(up: u32) -> usize {
    let mut killed = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let status = std::fs::read_to_string(entry.path().join("status")).unwrap_or_default();
        let parent = status
            .lines()
            .find_map(|l| l.strip_prefix("PPid:"))
            .and_then(|p| p.trim().parse::<u32>().ok());
        if parent == Some(up) && cmdline.contains("bootstrap") {
            let status = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status()
                .unwrap();
            killed += usize::from(status.success());
        }
    }
    std::thread::sleep(Duration::from_millis(200));
    killed
}

/// Runs `up` with `args` and returns what it said on stderr, having checked it failed.
fn refused(fixture: &Fixture, args: &[&str]) -> String {
    let output = fixture.xtask(&[&["up", "hardware", "dev"], args].concat());
    assert!(!output.status.success(), "up {args:?} did not fail");
    stderr(&output)
}

#[test]
fn up_refuses_what_it_cannot_serve() {
    let fixture = stand_in();
    let port = free_port().to_string();
    let log = refused(&fixture, &["--local", "--port", &port]);
    assert!(
        log.contains(
            "hardware-dev is not deployed on the emulator: deploy it first with \
             `cargo xtask deploy hardware dev --local`"
        ),
        "{log}"
    );

    let (stack, _) = deployed(&fixture, &[]);
    // `up <env>` serves what is deployed, numbering only those, and names what it does not serve.
    let port = free_port();
    let port_text = port.to_string();
    let (child, mut seen, lines) = spawn_until(
        fixture.command(&["up", "dev", "--local", "--port", &port_text]),
        true,
        "serving the deployed zips",
        Duration::from_secs(120),
    );
    // The note about what is not served goes to stderr, written before that line on stdout; the
    // two are read on threads of their own, so the note may come after it.
    if !seen.contains("not served: ") {
        read_until(&lines, &mut seen, "not served: ", Duration::from_secs(10));
    }
    stop(child);
    assert!(
        seen.contains(&format!("hardware       http://127.0.0.1:{port}/v1 ")),
        "{seen}"
    );
    assert!(
        seen.contains("not served: alerts: alerts-dev is not deployed on the emulator"),
        "{seen}"
    );

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let log = refused(&fixture, &["--local", "--port", &port]);
    assert!(
        log.contains(&format!(
            "port {port} is taken on 127.0.0.1: pick other ports with --port"
        )),
        "{log}"
    );

    // Bytes that do not match their key are never run.
    let (endpoint, _) = fixture.emulator().unwrap();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&crate::deploy::sdk(&endpoint))
            .force_path_style(true)
            .build(),
    );
    let replace = s3
        .put_object()
        .bucket("biometrix-infrastructure-us-west-2")
        .key(crate::deploy::key(&stack))
        .body(b"not the zip".to_vec().into())
        .send();
    crate::deploy::runtime().block_on(replace).unwrap();
    let port = free_port().to_string();
    let log = refused(&fixture, &["--local", "--port", &port]);
    assert!(
        log.contains("holds other bytes than its name says"),
        "{log}"
    );
    let delete = s3
        .delete_object()
        .bucket("biometrix-infrastructure-us-west-2")
        .key(crate::deploy::key(&stack))
        .send();
    crate::deploy::runtime().block_on(delete).unwrap();
    let log = refused(&fixture, &["--local", "--port", &port]);
    assert!(
        log.contains(&format!(
            "the code of hardware-dev-apigateway-execute is missing: \
             s3://biometrix-infrastructure-us-west-2/{} does not exist",
            crate::deploy::key(&stack)
        )),
        "{log}"
    );

    let log = refused(&fixture, &[]);
    assert!(
        log.contains("up runs what the local emulator holds: pass --local"),
        "{log}"
    );
}

#[test]
fn up_splits_requests_during_a_canary_as_the_alias_weighs_them() {
    let fixture = stand_in();
    deployed(&fixture, &[]);
    release(&fixture, "second");
    deployed(&fixture, &[]);
    // A canary, as CodeDeploy sets it: live on the first version, 30% to the second.
    let endpoint = fixture.emulator().expect("an emulator runs").0;
    let lambda = aws_sdk_lambda::Client::new(&crate::deploy::sdk(&endpoint));
    let runtime = crate::deploy::runtime();
    let function = "hardware-dev-apigateway-execute";
    let live = runtime
        .block_on(
            lambda
                .get_alias()
                .function_name(function)
                .name("live")
                .send(),
        )
        .unwrap();
    let second = live.function_version().unwrap().to_owned();
    let first = (second.parse::<u32>().unwrap() - 1).to_string();
    let weights = aws_sdk_lambda::types::AliasRoutingConfiguration::builder()
        .additional_version_weights(&second, 0.3)
        .build();
    runtime
        .block_on(
            lambda
                .update_alias()
                .function_name(function)
                .name("live")
                .function_version(&first)
                .routing_config(weights)
                .send(),
        )
        .unwrap();

    let port = free_port();
    let (child, log, seen) = up_in(&fixture, "dev", port);
    assert!(seen.contains("canary: 30.0% of requests go to"), "{seen}");
    let runs = 40;
    let seconds = (0..runs)
        .filter(|_| answered(port, "/v1/misc/time").starts_with("second "))
        .count();
    stop(child);
    // 30% of 40 is 12; a binomial's 99.9% interval is about 3 to 21.
    assert!(
        (3..=21).contains(&seconds),
        "{seconds} of {runs} went to the second version"
    );
    let log: Vec<String> = log.try_iter().collect();
    // Each request's REPORT line names the version that answered it: both appear.
    let versions: std::collections::BTreeSet<&str> = log
        .iter()
        .filter(|l| l.contains("REPORT RequestId:"))
        .filter_map(|l| l.rsplit_once(" (").map(|(_, v)| v))
        .collect();
    assert_eq!(versions.len(), 2, "{}", log.join("\n"));
}

//! serve on the stand-in workspace: its hardware stand-in, run with LISTEN_ADDR, answers every
//! request with the configuration serve gave it.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Child;
use std::time::Duration;

use serde_json::{Value, json};

use crate::deploy::{runtime, sdk, stand_in};
use crate::support::{Fixture, free_port, spawn_until, stderr};

/// Starts serve and waits for the line that says it is serving.
fn serve(fixture: &Fixture, args: &[&str]) -> (Child, String) {
    let command = fixture.command(&[&["serve", "hardware"], args].concat());
    let (child, mut seen, lines) =
        spawn_until(command, false, "is serving at", Duration::from_secs(300));
    // The rest of the banner: the sample curl.
    seen.push_str(
        &lines
            .recv_timeout(Duration::from_secs(5))
            .unwrap_or_default(),
    );
    (child, seen)
}

/// Ctrl-C, as a user stops it: serve stops the service and exits.
fn stop(child: &mut Child, address: &str) {
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(status.success(), "serve ended with {status}");
    assert!(
        TcpStream::connect(address).is_err(),
        "the service still listens on {address} after serve stopped"
    );
}

fn get(address: &str, path: &str) -> String {
    let mut stream = TcpStream::connect(address).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    body.to_owned()
}

/// One DynamoDB call to the fixture's emulator, unsigned (it reads only the credential scope).
fn dynamodb(endpoint: &str, action: &str, body: &Value) -> Value {
    json_api(
        endpoint,
        &format!("DynamoDB_20120810.{action}"),
        "dynamodb",
        body,
    )
}

/// One call of an AWS JSON API (`target` is its X-Amz-Target) on the emulator, which routes by the
/// signature's service and does not check the signature.
fn json_api(endpoint: &str, target: &str, service: &str, body: &Value) -> Value {
    let (host, action) = (endpoint.trim_start_matches("http://"), target);
    let body = body.to_string();
    let mut stream = TcpStream::connect(host).unwrap();
    write!(
        stream,
        "POST / HTTP/1.0\r\nHost: {host}\r\nX-Amz-Target: {target}\r\n\
         Content-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=testing/20260101/us-west-2/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.contains(" 200 "), "{action}: {head}\n{body}");
    serde_json::from_str(body).unwrap()
}

#[test]
fn serve_runs_the_service_against_its_stores_and_answers() {
    let fixture = stand_in();
    let seed = fixture.root.join("seed.json");
    std::fs::write(
        &seed,
        json!({"FirmwareTable": [{"device_type": "accessory", "version": "1.10"}]}).to_string(),
    )
    .unwrap();
    let port = free_port().to_string();
    let (mut child, banner) = serve(
        &fixture,
        &["--port", &port, "--seed", seed.to_str().unwrap()],
    );
    let address = format!("127.0.0.1:{port}");
    assert!(banner.contains(&format!("http://{address}/v1")), "{banner}");
    assert!(banner.contains("curl -i http://"), "{banner}");

    let body = get(&address, "/v1/misc/time");
    let config: BTreeMap<&str, &str> = body.lines().filter_map(|l| l.split_once('=')).collect();
    stop(&mut child, &address);

    // Each store the template declares, under its local name, with the function's variables.
    assert_eq!(
        config["FIRMWARE_TABLE"], "hardware-local-firmwaretable",
        "{body}"
    );
    assert_eq!(config["SYNC_TABLE"], "hardware-local-synctable");
    assert_eq!(config["FIRMWARE_BUCKET"], "hardware-local-firmwarebucket");
    assert!(
        config["ACCESSORY_USER_POOL_ID"].starts_with("us-west-2_"),
        "{body}"
    );
    assert!(!config["ACCESSORY_CLIENT_ID"].is_empty());
    assert_eq!(config["RUST_LOG"], "info");
    let (endpoint, _) = fixture.emulator().expect("serve started the emulator");
    assert_eq!(config["AWS_ENDPOINT_URL"], endpoint);

    // Secrets are ARNs in the environment, and their values are in the emulator's Secrets Manager,
    // as a deployed function reads them.
    let secret = |arn: &str| {
        assert!(
            arn.starts_with("arn:aws:secretsmanager:us-west-2:"),
            "{arn}"
        );
        let secrets = aws_sdk_secretsmanager::Client::new(&sdk(&endpoint));
        runtime()
            .block_on(secrets.get_secret_value().secret_id(arn).send())
            .unwrap_or_else(|e| panic!("{arn}: {e:?}"))
            .secret_string()
            .unwrap()
            .to_owned()
    };
    let token_secret = secret(config["SERVICE_TOKEN_SECRET_ARN"]);
    assert_eq!(token_secret.len(), 64);
    assert!(
        !body.contains(&token_secret),
        "no secret value in the environment"
    );

    // The database is a live PostgreSQL.
    let database = &secret(config["DATABASE_SECRET_ARN"]);
    assert!(
        !body.contains(database.as_str()),
        "no secret value in the environment"
    );
    let port = database
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("{database}"));
    assert!(database.starts_with("postgres://"), "{database}");
    TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap()))
        .unwrap_or_else(|e| panic!("nothing listens for {database}: {e}"));
    // Its cluster is in a directory of an unguessable name, made 0700, and a real directory.
    let state: Value = serde_json::from_slice(
        &std::fs::read(fixture.root.join("target/local/postgres.json")).unwrap(),
    )
    .unwrap();
    let data = std::path::PathBuf::from(state["data"].as_str().unwrap());
    let metadata = std::fs::symlink_metadata(&data).unwrap();
    assert!(metadata.is_dir(), "{}", data.display());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777,
        0o700
    );
    let name = data.file_name().unwrap().to_string_lossy().into_owned();
    let suffix = name.rsplit('-').next().unwrap();
    assert_eq!(suffix.len(), 16, "a random suffix: {name}");
    assert!(suffix.chars().all(|c| c.is_ascii_hexdigit()), "{name}");
    // The service-token secret is its owner's only.
    let secret = fixture.root.join("target/local/service-token-secret");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&secret).unwrap().permissions())
            & 0o777,
        0o600
    );

    // The tables exist, with the seeded item and nothing else.
    let scanned = dynamodb(
        &endpoint,
        "Scan",
        &json!({"TableName": "hardware-local-firmwaretable"}),
    );
    assert_eq!(scanned["Count"], 1, "{scanned}");
    assert_eq!(scanned["Items"][0]["version"]["S"], "1.10");
    let sync = dynamodb(
        &endpoint,
        "Scan",
        &json!({"TableName": "hardware-local-synctable"}),
    );
    assert_eq!(sync["Count"], 0, "serve seeds nothing unless asked: {sync}");

    // The accessory pool has the template's password policy, not the emulator's strict default.
    let pool = json_api(
        &endpoint,
        "AWSCognitoIdentityProviderService.DescribeUserPool",
        "cognito-idp",
        &json!({"UserPoolId": config["ACCESSORY_USER_POOL_ID"]}),
    );
    let policy = &pool["UserPool"]["Policies"]["PasswordPolicy"];
    assert_eq!(policy["MinimumLength"], 8, "{pool}");
    assert_eq!(policy["RequireUppercase"], false, "{pool}");
    assert_eq!(policy["RequireSymbols"], false, "{pool}");
}

#[test]
fn serve_refuses_a_seed_for_a_table_the_template_does_not_declare() {
    let fixture = stand_in();
    let seed = fixture.root.join("seed.json");
    std::fs::write(&seed, r#"{"NoSuchTable": []}"#).unwrap();
    let output = fixture.xtask(&["serve", "hardware", "--seed", seed.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("names table NoSuchTable, which"),
        "{}",
        stderr(&output)
    );
    assert!(
        fixture.emulator().is_none(),
        "nothing is started for a bad seed file"
    );
}

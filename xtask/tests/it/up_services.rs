//! `up` with the real services: the stacks deployed from the real templates, then each function's
//! code set (as `UpdateFunctionCode` sets it) to the service's own binary, built for this machine
//! in the test profile the workspace's tests already built, stripped and zipped under its
//! SHA-256. So the hardware, users and preprocessing APIs answer through the local API Gateway
//! with the environment CloudFormation resolved: hardware's register → login → GET accessory
//! chain, its binary firmware route, CORS on errors and `OPTIONS`; users' `GET /user/{id}` from
//! the local PostgreSQL with a service token; preprocessing's session creation, which verifies the
//! accessory's token and calls the hardware API.
//!
//! The arm64 release build of the real services takes a quarter of an hour on two cores, too
//! long for a test; `up.rs` runs the stand-in's arm64 zip under qemu.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::deploy::{runtime, sdk, stand_in};
use crate::support::{Fixture, call, free_port, spawn_until, stderr};

const SERVICES: [&str; 3] = ["hardware", "users", "preprocessing"];
const BUCKET: &str = "biometrix-infrastructure-us-west-2";

/// The services' binaries for this machine, as `cargo test` builds them (a no-op after the
/// workspace's own test build): service → executable.
fn service_binaries() -> Vec<(String, PathBuf)> {
    workspace_binaries("test", &SERVICES)
}

/// The binaries of `packages` for this machine, as `cargo <command>` (`test --no-run`, or
/// `build`) builds them in the dev profile: package → executable.
pub fn workspace_binaries(command: &str, packages: &[&str]) -> Vec<(String, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cargo = Command::new(cargo);
    cargo
        .current_dir(&root)
        .args([command, "--locked", "--message-format=json"]);
    if command == "test" {
        cargo.arg("--no-run");
    }
    for package in packages {
        cargo.args(["-p", package]);
    }
    let mut command = cargo;
    let output = command.output().expect("cargo runs");
    assert!(
        output.status.success(),
        "building the services failed:\n{}",
        stderr(&output)
    );
    let mut binaries = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(message) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let name = message["target"]["name"].as_str().unwrap_or_default();
        if message["reason"] == "compiler-artifact"
            && message["target"]["kind"] == json!(["bin"])
            && message["profile"]["test"] == false
            && packages.contains(&name)
            && let Some(executable) = message["executable"].as_str()
        {
            binaries.push((name.to_owned(), PathBuf::from(executable)));
        }
    }
    binaries.sort();
    binaries.dedup_by(|a, b| a.0 == b.0);
    assert_eq!(binaries.len(), packages.len(), "{binaries:?}");
    binaries
}

/// `binary`, stripped, as a Lambda zip (`bootstrap`, 0755); its bytes.
fn lambda_zip(binary: &Path, scratch: &Path) -> Vec<u8> {
    let stripped = scratch.join(format!(
        "{}.stripped",
        binary.file_name().unwrap().to_string_lossy()
    ));
    let status = Command::new("strip")
        .arg("-o")
        .arg(&stripped)
        .arg(binary)
        .status()
        .expect("strip (binutils) is installed");
    assert!(status.success(), "strip {}", binary.display());
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(1))
        .unix_permissions(0o755);
    zip.start_file("bootstrap", options).unwrap();
    zip.write_all(&std::fs::read(&stripped).unwrap()).unwrap();
    zip.finish().unwrap().into_inner()
}

/// Sets each function's code to its service's binary, published under its SHA-256 as `publish`
/// names artifacts.
fn set_code(fixture: &Fixture, binaries: &[(String, PathBuf)]) {
    for (service, binary) in binaries {
        set_function_code(fixture, service, "apigateway-execute", binary);
    }
}

/// Sets `<service>-dev-<function>`'s code to `binary`, zipped and published under its SHA-256 as
/// `publish` names artifacts, and, where the function has a `live` alias, publishes a version of
/// it and makes it live.
pub fn set_function_code(fixture: &Fixture, service: &str, function: &str, binary: &Path) {
    let (endpoint, _) = fixture.emulator().unwrap();
    let config = sdk(&endpoint);
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let lambda = aws_sdk_lambda::Client::new(&config);
    {
        let zip = lambda_zip(binary, &fixture.root);
        let hash: String = Sha256::digest(&zip)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("lambdas/{service}/{function}/{hash}.zip");
        let put = s3
            .put_object()
            .bucket(BUCKET)
            .key(&key)
            .body(zip.into())
            .send();
        runtime().block_on(put).unwrap();
        let update = lambda
            .update_function_code()
            .function_name(format!("{service}-dev-{function}"))
            .s3_bucket(BUCKET)
            .s3_key(&key)
            .send();
        runtime().block_on(update).unwrap();
        // What API Gateway invokes is the live alias: published and made live, as a deploy does.
        let name = format!("{service}-dev-{function}");
        let live = lambda.get_alias().function_name(&name).name("live").send();
        if runtime().block_on(live).is_ok() {
            let published = lambda.publish_version().function_name(&name).send();
            let version = runtime().block_on(published).unwrap();
            let moved = lambda
                .update_alias()
                .function_name(&name)
                .name("live")
                .function_version(version.version().unwrap())
                .send();
            runtime().block_on(moved).unwrap();
        }
    }
}

/// A first port with the next two free as well.
fn three_ports() -> u16 {
    loop {
        let port = free_port();
        if (1..3).all(|n| std::net::TcpListener::bind(("127.0.0.1", port + n)).is_ok()) {
            return port;
        }
    }
}

/// An HS256 service token for `audience`, signed with the workspace's local service-token secret,
/// as one service signs its calls to another.
fn service_token(fixture: &Fixture, audience: &str) -> String {
    let secret = std::fs::read_to_string(fixture.root.join("target/local/service-token-secret"))
        .expect("deploy --local made the service-token secret");
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 300;
    let input = format!(
        "{}.{}",
        b64(br#"{"alg":"HS256","typ":"JWT"}"#),
        b64(json!({"sub": "up-test", "aud": audience, "exp": exp})
            .to_string()
            .as_bytes())
    );
    format!(
        "{input}.{}",
        b64(&hmac_sha256(secret.trim().as_bytes(), input.as_bytes()))
    )
}

/// HMAC-SHA256 (RFC 2104), for a key of at most one block.
fn hmac_sha256(key: &[u8], message: &[u8]) -> Vec<u8> {
    assert!(key.len() <= 64);
    let mut block = [0u8; 64];
    block[..key.len()].copy_from_slice(key);
    let pad = |byte: u8| block.iter().map(|k| k ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .to_vec()
}

/// Runs SQL on the local PostgreSQL that `deploy --local` started for the fixture.
fn psql(fixture: &Fixture, sql: &str) {
    let state: Value = serde_json::from_slice(
        &std::fs::read(fixture.root.join("target/local/postgres.json"))
            .expect("deploy --local started a PostgreSQL"),
    )
    .unwrap();
    let port = state["port"].to_string();
    // The server takes the password made for it (scram-sha-256), kept 0600 beside its state.
    let password =
        std::fs::read_to_string(fixture.root.join("target/local/postgres.password")).unwrap();
    let status = Command::new("psql")
        .env("PGPASSWORD", password.trim())
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
        ])
        .args(["-U", "postgres", "-d", "biometrix", "-c", sql])
        .status()
        .expect("psql is installed with PostgreSQL");
    assert!(status.success(), "{sql}");
}

/// Puts firmware 1.10 for accessories in the stack's table and bucket; its bytes.
fn firmware(fixture: &Fixture) -> Vec<u8> {
    let (endpoint, _) = fixture.emulator().unwrap();
    let config = sdk(&endpoint);
    let dynamodb = aws_sdk_dynamodb::Client::new(&config);
    let s = |v: &str| aws_sdk_dynamodb::types::AttributeValue::S(v.to_owned());
    let put = dynamodb
        .put_item()
        .table_name("hardware-dev-firmware")
        .item("device_type", s("accessory"))
        .item("version", s("1.10"))
        .item("created_date", s("2026-02-01T09:30:00Z"))
        .send();
    runtime().block_on(put).unwrap();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config)
            .force_path_style(true)
            .build(),
    );
    let put = s3
        .put_object()
        .bucket("biometrix-hardware-dev-firmware-us-west-2")
        .key("accessory/1.10")
        .body(bytes.clone().into())
        .send();
    runtime().block_on(put).unwrap();
    bytes
}

#[test]
fn up_serves_the_real_services_as_deployed() {
    let fixture = stand_in();
    // The legacy schema, which the local PostgreSQL gets as the repository's own does.
    let migrations = fixture.root.join("services/kit/migrations");
    std::fs::create_dir_all(&migrations).unwrap();
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/kit/migrations");
    for entry in std::fs::read_dir(source).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), migrations.join(entry.file_name())).unwrap();
    }
    let mut deploy = vec!["deploy"];
    deploy.extend(SERVICES);
    deploy.extend(["dev", "--local", "--timeout", "120"]);
    let output = fixture.xtask(&deploy);
    assert!(output.status.success(), "deploy:\n{}", stderr(&output));
    set_code(&fixture, &service_binaries());
    let firmware = firmware(&fixture);

    let port = three_ports();
    let (hardware, users, preprocessing) = (port, port + 1, port + 2);
    let mut up = vec!["up"];
    up.extend(SERVICES);
    let port_text = port.to_string();
    up.extend(["dev", "--local", "--port", &port_text]);
    let (child, seen, log) = spawn_until(
        fixture.command(&up),
        true,
        "serving the deployed zips",
        Duration::from_secs(120),
    );
    assert!(
        seen.contains(&format!(
            "preprocessing  http://127.0.0.1:{preprocessing}/v1  \
             http://127.0.0.1:{preprocessing}/preprocessing  (x86_64 "
        )),
        "{seen}"
    );

    // Hardware: CORS on every answer, errors included; OPTIONS anywhere.
    let time = call(hardware, "GET", "/v1/misc/time", None, None);
    let said = || {
        std::thread::sleep(Duration::from_millis(300));
        format!("{seen}\n{}", log.try_iter().collect::<Vec<_>>().join("\n"))
    };
    assert_eq!(time.status, 200, "{}", said());
    assert!(time.json()["current_date"].is_string());
    let unknown = call(hardware, "GET", "/hardware/no/such/route/", None, None);
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.header("status"), Some("UnknownEndpoint"));
    assert_eq!(unknown.header("access-control-allow-origin"), Some("*"));
    let options = call(hardware, "OPTIONS", "/hardware/misc/time", None, None);
    assert_eq!(options.status, 200);
    assert_eq!(
        options.header("access-control-allow-methods"),
        Some("DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT")
    );

    // The binary firmware route: the exact bytes, through API Gateway's base64.
    let download = call(
        hardware,
        "GET",
        "/v1/firmware/accessory/1.10/download",
        None,
        None,
    );
    assert_eq!(download.status, 200, "{}", download.head);
    assert_eq!(
        download.header("content-type"),
        Some("application/octet-stream")
    );
    assert!(download.body == firmware, "the firmware's bytes differ");

    // Hardware's chain: register, log in with the emulator's user pool, read the accessory.
    let mac = "a0:b1:c2:d3:e4:f5";
    let register = call(
        hardware,
        "POST",
        &format!("/v1/accessory/{mac}/register"),
        None,
        Some(
            json!({"password": "correct horse", "hardware_model": "biometrix-kit",
                    "firmware_version": "1.10", "settings_key": "default"}),
        ),
    );
    assert_eq!(
        register.status,
        201,
        "{}",
        String::from_utf8_lossy(&register.body)
    );
    let login = call(
        hardware,
        "POST",
        &format!("/hardware/accessory/{mac}/login"),
        None,
        Some(json!({"password": "correct horse"})),
    );
    assert_eq!(
        login.status,
        200,
        "{}",
        String::from_utf8_lossy(&login.body)
    );
    let accessory_token = login.json()["authorization"]["jwt"]
        .as_str()
        .unwrap()
        .to_owned();
    let owner = "5d1f4a3e-9c2b-4e8f-a7d6-0b1c2d3e4f5a";
    let patched = call(
        hardware,
        "PATCH",
        &format!("/v1/accessory/{mac}"),
        Some(&accessory_token),
        Some(json!({"owner_id": owner})),
    );
    assert_eq!(
        patched.status,
        200,
        "{}",
        String::from_utf8_lossy(&patched.body)
    );
    let read = call(
        hardware,
        "GET",
        &format!("/v1/accessory/{mac}"),
        Some(&accessory_token),
        None,
    );
    assert_eq!(read.status, 200);
    assert_eq!(read.json()["accessory"]["owner_id"], owner);

    // Users: a user of the legacy database, read with a service token.
    psql(
        &fixture,
        &format!("INSERT INTO users (id, role, mass_kg) VALUES ('{owner}', 'athlete', 70)"),
    );
    let user = call(
        users,
        "GET",
        &format!("/v1/user/{owner}"),
        Some(&service_token(&fixture, "users")),
        None,
    );
    assert_eq!(user.status, 200, "{}", String::from_utf8_lossy(&user.body));
    assert_eq!(user.json()["user"]["user_id"], owner);
    let refused = call(
        users,
        "GET",
        &format!("/users/user/{owner}"),
        Some(&service_token(&fixture, "hardware")),
        None,
    );
    assert_eq!(refused.status, 401, "a token for another service");

    // Preprocessing: the accessory's token from hardware's pool; the owner from the hardware API.
    let session = call(
        preprocessing,
        "POST",
        "/v1/session",
        Some(&accessory_token),
        Some(json!({"event_date": "2026-11-30T10:00:00Z", "sensors": ["11:22:33:44:55:66"]})),
    );
    assert_eq!(
        session.status,
        201,
        "{}",
        String::from_utf8_lossy(&session.body)
    );
    let session = session.json();
    assert_eq!(session["session"]["accessory_id"], mac);
    assert_eq!(session["session"]["user_id"], owner);

    super::up::stop(child);
    let log: Vec<String> = log.try_iter().collect();
    let all = format!("{seen}\n{}", log.join("\n"));
    assert!(
        all.contains(
            "[preprocessing] filled in locally, since the emulator could not resolve them: \
             ACCESSORY_JWKS_URL=http://127.0.0.1:"
        ) && all.contains(" HARDWARE_API_URL=http://127.0.0.1:"),
        "{all}"
    );
}

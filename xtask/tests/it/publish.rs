//! `publish` against the AWS emulator that `scripts/test` starts.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Output;

use serde_json::Value;
use sha2::Digest as _;

use crate::support::{Fixture, assert_refused, stderr, stdout};

fn endpoint() -> String {
    let endpoint = std::env::var("AWS_ENDPOINT_URL")
        .expect("AWS_ENDPOINT_URL is not set: these tests need the AWS emulator; run them with scripts/test");
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "{endpoint} is not a local emulator"
    );
    endpoint
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn s3() -> aws_sdk_s3::Client {
    endpoint();
    let sdk = runtime().block_on(aws_config::load_defaults(
        aws_config::BehaviorVersion::latest(),
    ));
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&sdk)
            .force_path_style(true)
            .build(),
    )
}

fn new_bucket(s3: &aws_sdk_s3::Client) -> String {
    let bucket = format!("artifacts-{}", std::process::id()) + &format!("-{:x}", rand_suffix());
    let location = aws_sdk_s3::types::CreateBucketConfiguration::builder()
        .location_constraint(aws_sdk_s3::types::BucketLocationConstraint::UsWest2)
        .build();
    runtime()
        .block_on(
            s3.create_bucket()
                .bucket(&bucket)
                .create_bucket_configuration(location)
                .send(),
        )
        .expect("the emulator creates the bucket");
    bucket
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn publish(fixture: &Fixture, bucket: &str) -> Output {
    fixture.xtask(&["publish", "tiny", "dev", "--bucket", bucket, "--json"])
}

fn published(output: &Output) -> Value {
    assert!(
        output.status.success(),
        "publish failed:\n{}",
        stderr(output)
    );
    serde_json::from_str(&stdout(output)).unwrap()
}

fn get(
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    key: &str,
) -> Option<(Vec<u8>, std::collections::HashMap<String, String>)> {
    runtime().block_on(async {
        let object = s3.get_object().bucket(bucket).key(key).send().await.ok()?;
        let metadata = object.metadata().cloned().unwrap_or_default();
        Some((object.body.collect().await.unwrap().to_vec(), metadata))
    })
}

/// Calls the emulator's request recorder (`/moto-api/recorder/<action>`) and returns the body.
fn recorder(method: &str, action: &str) -> String {
    let host = endpoint().trim_start_matches("http://").to_owned();
    let mut stream = TcpStream::connect(&host).unwrap();
    write!(
        stream,
        "{method} /moto-api/recorder/{action} HTTP/1.0\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
        "{response}"
    );
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Counts the requests of one method the emulator itself received for `bucket`'s objects while
/// `during` ran; the lease every publish takes and gives back (`locks/artifacts/`) is not counted.
fn recorded(bucket: &str, method: &str, during: impl FnOnce()) -> usize {
    recorder("POST", "start-recording");
    during();
    let recording = recorder("GET", "download-recording");
    recorder("POST", "stop-recording");
    recording
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|request| {
            request["method"] == method
                && request["url"].as_str().is_some_and(|url| {
                    url.contains(&format!("/{bucket}")) && !url.contains("/locks/artifacts/")
                })
        })
        .count()
}

#[test]
fn first_publish_uploads_with_provenance_and_a_republish_sends_nothing() {
    let (s3, fixture) = (s3(), Fixture::copy("tiny"));
    let bucket = new_bucket(&s3);
    let report = published(&publish(&fixture, &bucket));
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 4, "two zips and two templates: {objects:?}");
    assert_eq!(report["put_requests"], 4);
    for object in objects {
        assert_eq!(object["outcome"], "uploaded");
        let key = object["key"].as_str().unwrap();
        let (body, metadata) =
            get(&s3, &bucket, key).unwrap_or_else(|| panic!("{key} was not stored"));
        assert_eq!(
            body,
            std::fs::read(object["path"].as_str().unwrap()).unwrap(),
            "{key}"
        );
        assert_eq!(metadata["sha256"], object["sha256"].as_str().unwrap());
        assert_eq!(metadata["git-dirty"], "true");
        if key.starts_with("lambdas/") {
            assert!(
                key.starts_with("lambdas/tiny/")
                    && key.ends_with(&format!("{}.zip", object["sha256"].as_str().unwrap()))
            );
            assert_eq!(
                metadata["profile"], "fast",
                "dev builds with the fast profile"
            );
            assert!(metadata["toolchain"].starts_with("rustc "));
            assert!(metadata["target"].ends_with("-unknown-linux-gnu"));
        } else {
            let file = if key.ends_with("apigateway.yaml") {
                "apigateway.yaml"
            } else {
                "tiny-environment.yaml"
            };
            assert_eq!(
                key,
                format!(
                    "cloudformation/tiny/{}/{file}",
                    object["sha256"].as_str().unwrap()
                )
            );
        }
    }

    let mut again = None;
    let heads = recorded(&bucket, "HEAD", || again = Some(publish(&fixture, &bucket)));
    let report = published(&again.unwrap());
    assert_eq!(heads, 5, "the bucket and each object were checked");
    assert_eq!(report["put_requests"], 0);
    assert_eq!(report["bytes_sent"], 0);
    assert!(
        report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["outcome"] == "unchanged")
    );

    let mut third = None;
    let puts = recorded(&bucket, "PUT", || third = Some(publish(&fixture, &bucket)));
    published(&third.unwrap());
    assert_eq!(
        puts, 0,
        "the emulator received no PUT for an unchanged service"
    );
}

#[test]
fn a_tampered_object_is_refused_not_reused() {
    let (s3, fixture) = (s3(), Fixture::copy("tiny"));
    let bucket = new_bucket(&s3);
    let report = published(&publish(&fixture, &bucket));
    let key = report["objects"][0]["key"].as_str().unwrap().to_owned();
    runtime()
        .block_on(
            s3.put_object()
                .bucket(&bucket)
                .key(&key)
                .body(b"not a zip".to_vec().into())
                .metadata("sha256", "0".repeat(64))
                .send(),
        )
        .unwrap();
    let output = publish(&fixture, &bucket);
    assert!(!output.status.success());
    let message = stderr(&output);
    // The forged metadata is not believed: the bytes are hashed.
    let actual: String = sha2::Sha256::digest(b"not a zip")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(
        message.contains(&format!(
            "s3://{bucket}/{key} already exists with SHA-256 {actual}"
        )),
        "{message}"
    );
    assert_eq!(
        get(&s3, &bucket, &key).unwrap().0,
        b"not a zip",
        "publish left it for a person to look at"
    );
}

#[test]
fn a_template_that_does_not_parse_is_refused_before_the_build() {
    let (s3, fixture) = (s3(), Fixture::copy("tiny"));
    let bucket = new_bucket(&s3);
    let template = fixture.root.join("cloudformation/tiny-environment.yaml");
    let text = std::fs::read_to_string(&template).unwrap();
    std::fs::write(&template, format!("{text}\n  Broken: [unclosed\n")).unwrap();
    let output = publish(&fixture, &bucket);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("error: tiny-environment.yaml is not valid YAML"),
        "{}",
        stderr(&output)
    );
    assert!(
        !fixture.root.join("target/lambda").exists(),
        "nothing was built"
    );
    let listed = runtime()
        .block_on(s3.list_objects_v2().bucket(&bucket).send())
        .unwrap();
    assert!(listed.contents().is_empty(), "nothing was uploaded");
}

#[test]
fn a_missing_bucket_says_how_to_create_it() {
    let fixture = Fixture::copy("tiny");
    endpoint();
    let output = publish(&fixture, "no-such-artifact-bucket");
    assert_refused(
        &output,
        "the artifact bucket no-such-artifact-bucket does not exist in us-west-2: create it with \
         `cargo xtask bootstrap --region us-west-2`, or pass --bucket with an existing one",
    );
    assert!(
        !fixture.root.join("target").exists(),
        "it failed before building anything"
    );
}

#[test]
fn missing_credentials_say_how_to_provide_them() {
    let fixture = Fixture::copy("tiny");
    let commands: [&[&str]; 4] = [
        &["publish", "tiny", "dev"],
        &["rollback", "tiny", "dev"],
        &["promote", "tiny", "dev", "qa"],
        &["gc"],
    ];
    for args in commands {
        let mut command = fixture.command(args);
        for name in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "AWS_PROFILE",
            "AWS_WEB_IDENTITY_TOKEN_FILE",
            "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
            "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        ] {
            command.env_remove(name);
        }
        let nowhere = fixture.root.join("no-such-file");
        command
            .env("AWS_SHARED_CREDENTIALS_FILE", &nowhere)
            .env("AWS_CONFIG_FILE", &nowhere)
            .env("AWS_EC2_METADATA_DISABLED", "true");
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?}");
        let message = stderr(&output);
        assert!(
            message.contains("error: no AWS credentials found"),
            "{args:?}: {message}"
        );
        assert!(
            message.contains(
                "set AWS_PROFILE (after `aws sso login`) or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            "{args:?}: {message}"
        );
    }
}

/// A proxy to the emulator that cuts every connection once it has carried `limit` request bytes.
fn cutting_proxy(limit: usize) -> String {
    let upstream = endpoint().trim_start_matches("http://").to_owned();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(server) = TcpStream::connect(&upstream) else {
                continue;
            };
            let (mut client_in, mut server_out) =
                (client.try_clone().unwrap(), server.try_clone().unwrap());
            std::thread::spawn(move || {
                let (mut sent, mut buffer) = (0, [0u8; 4096]);
                while let Ok(n) = client_in.read(&mut buffer) {
                    if n == 0 || sent + n > limit || server_out.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                    sent += n;
                }
                let _ = client_in.shutdown(Shutdown::Both);
                let _ = server_out.shutdown(Shutdown::Both);
            });
            let (mut server_in, mut client_out) = (server, client);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut server_in, &mut client_out);
            });
        }
    });
    address
}

#[test]
fn an_interrupted_upload_leaves_nothing_and_publishing_again_works() {
    let (s3, fixture) = (s3(), Fixture::copy("tiny"));
    let bucket = new_bucket(&s3);
    let mut command = fixture.command(&["publish", "tiny", "dev", "--bucket", &bucket]);
    command.env("AWS_ENDPOINT_URL", cutting_proxy(16 * 1024));
    let output = command.output().unwrap();
    assert!(
        !output.status.success(),
        "the cut connection fails the upload"
    );
    let message = stderr(&output);
    assert!(
        message.contains("error: uploading s3://")
            && message.contains("nothing partial is left: publish again"),
        "{message}"
    );

    let plan: Value = serde_json::from_slice(
        &std::fs::read(fixture.root.join("target/lambda/tiny/manifest.json")).unwrap(),
    )
    .unwrap();
    for artifact in plan["functions"].as_array().unwrap() {
        let key = artifact["key"].as_str().unwrap();
        assert!(
            get(&s3, &bucket, key).is_none(),
            "{key} must not exist after a cut upload"
        );
    }

    let report = published(&publish(&fixture, &bucket));
    for object in report["objects"].as_array().unwrap() {
        let key = object["key"].as_str().unwrap();
        let (body, _) = get(&s3, &bucket, key).unwrap();
        assert_eq!(
            body,
            std::fs::read(object["path"].as_str().unwrap()).unwrap(),
            "{key} is whole"
        );
    }
}

#[test]
fn dry_run_lists_the_uploads_without_contacting_aws() {
    let fixture = Fixture::copy("tiny");
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut command = fixture.command(&[
        "publish",
        "tiny",
        "dev",
        "--region",
        "eu-west-1",
        "--dry-run",
        "--json",
    ]);
    command.env("AWS_ENDPOINT_URL", format!("http://{closed}"));
    let report = published(&command.output().unwrap());
    assert_eq!(report["region"], "eu-west-1");
    assert_eq!(report["bucket"], "biometrix-infrastructure-eu-west-1");
    assert_eq!(report["head_requests"], 0);
    assert_eq!(report["put_requests"], 0);
    let objects = report["objects"].as_array().unwrap();
    assert_eq!(objects.len(), 4);
    assert!(
        objects.iter().all(|o| o["outcome"] == "planned"),
        "{objects:?}"
    );
}

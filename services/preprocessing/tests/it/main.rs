//! The preprocessing API through its router: sessions in a table of their own in the emulator,
//! uploads in its S3, and the accessory's owner looked up from the real hardware router, served
//! on a local port and backed by the emulator's Cognito pool.

use axum::Router;
use http::Method;
use kit::testing::{Answer, Tokens, call_as, emulator, service_token, table};
use serde_json::{Value, json};
use uuid::Uuid;

const MAC: &str = "0a:1b:2c:3d:4e:5f";
const LONELY: &str = "0a:1b:2c:3d:4e:60";

struct World {
    router: Router,
    tokens: Tokens,
    owner: Uuid,
    bucket: String,
    s3: aws_sdk_s3::Client,
}

async fn world() -> World {
    let sdk = emulator().await;
    let suffix = Uuid::new_v4().simple().to_string();
    let bucket = format!("ingest-{suffix}");
    let table = table(
        "sessions",
        "id",
        None,
        &[(preprocessing::USER_INDEX, "user_id", "event_date")],
    )
    .await;
    let s3 = kit::s3_client(sdk);
    s3.create_bucket()
        .bucket(&bucket)
        .create_bucket_configuration(
            aws_sdk_s3::types::CreateBucketConfiguration::builder()
                .location_constraint("us-west-2".into())
                .build(),
        )
        .send()
        .await
        .expect("the emulator creates the ingest bucket");

    // The real hardware API, on a local port, over an accessory pool of its own.
    let tokens = Tokens::serve().await;
    let pool = hardware::testing::pool().await;
    let hardware = hardware::router(hardware::Hardware::new(
        hardware::Config {
            firmware_table: "unused".into(),
            firmware_bucket: "unused".into(),
            sync_table: "unused".into(),
            database: kit::testing::no_database().await,
            accessory_pool_id: pool.id.clone(),
            accessory_client_id: pool.client_id.clone(),
            auth: tokens.auth_config("hardware").await,
        },
        sdk,
    ));
    let owner = Uuid::new_v4();
    for (mac, patch) in [
        (MAC, json!({"owner_id": owner})),
        (LONELY, json!({"state": "new"})),
    ] {
        let registered = call_as(&hardware, "", Method::POST, &format!("/v1/accessory/{mac}/register"),
            Some(&json!({"password": "correct horse", "hardware_model": "v2", "firmware_version": "1.0", "settings_key": "k"}).to_string())).await;
        assert_eq!(registered.status, 201);
        let patched = call_as(
            &hardware,
            &service_token("setup", "hardware"),
            Method::PATCH,
            &format!("/v1/accessory/{mac}"),
            Some(&patch.to_string()),
        )
        .await;
        assert_eq!(patched.status, 200);
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hardware_url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, hardware).await });

    let router = preprocessing::router(preprocessing::Preprocessing::new(
        preprocessing::Config {
            sessions_table: table,
            ingest_bucket: bucket.clone(),
            hardware_url,
            auth: tokens.auth_config("preprocessing").await,
            signer: kit::testing::service_secret().await,
        },
        sdk,
    ));
    World {
        router,
        tokens,
        owner,
        bucket,
        s3,
    }
}

async fn send(
    world: &World,
    token: &str,
    method: Method,
    uri: &str,
    body: Option<Value>,
) -> Answer {
    call_as(
        &world.router,
        token,
        method,
        uri,
        body.map(|b| b.to_string()).as_deref(),
    )
    .await
}

async fn upload(
    router: &Router,
    token: &str,
    id: &str,
    bytes: &[u8],
    content_type: &str,
) -> Answer {
    let request = http::Request::builder()
        .method(Method::POST)
        .uri(format!("/v1/session/{id}/upload"))
        .header("authorization", token)
        .header("content-type", content_type)
        .body(axum::body::Body::from(bytes.to_vec()))
        .unwrap();
    kit::testing::send(router, request).await
}

async fn create(world: &World, event_date: &str) -> Value {
    let answer = send(world, &world.tokens.accessory(MAC), Method::POST, "/v1/session",
        Some(json!({"event_date": event_date, "sensors": ["AA:BB:CC:DD:EE:01", "aa:bb:cc:dd:ee:02"]}))).await;
    answer.assert_status(201);
    answer.json()["session"].clone()
}

async fn objects(world: &World, id: &str) -> Vec<(String, Vec<u8>)> {
    let listed = world
        .s3
        .list_objects_v2()
        .bucket(&world.bucket)
        .prefix(id)
        .send()
        .await
        .unwrap();
    let mut found = Vec::new();
    for object in listed.contents() {
        let key = object.key().unwrap().to_owned();
        let body = world
            .s3
            .get_object()
            .bucket(&world.bucket)
            .key(&key)
            .send()
            .await
            .unwrap();
        found.push((key, body.body.collect().await.unwrap().to_vec()));
    }
    found
}

#[tokio::test]
async fn a_session_is_created_uploaded_to_and_completed() {
    let world = world().await;
    let session = create(&world, "2026-03-01T10:00:00+01:00").await;
    let id = session["id"].as_str().unwrap().to_owned();
    assert!(id.parse::<Uuid>().is_ok());
    assert_eq!(session["accessory_id"], MAC);
    assert_eq!(
        session["user_id"],
        json!(world.owner),
        "the owner, from the hardware API"
    );
    assert_eq!(
        session["sensor_ids"],
        json!(["aa:bb:cc:dd:ee:01", "aa:bb:cc:dd:ee:02"])
    );
    assert_eq!(session["event_date"], "2026-03-01T09:00:00Z");
    assert_eq!(session["session_status"], "CREATE_COMPLETE");

    // Its accessory, its user and services read it; nobody else does.
    for token in [
        world.tokens.accessory(MAC),
        world.tokens.user(world.owner),
        service_token("x", "preprocessing"),
    ] {
        let answer = send(
            &world,
            &token,
            Method::GET,
            &format!("/preprocessing/session/{id}"),
            None,
        )
        .await;
        assert_eq!(answer.json()["session"], session);
    }
    send(
        &world,
        &world.tokens.user(Uuid::new_v4()),
        Method::GET,
        &format!("/v1/session/{id}"),
        None,
    )
    .await
    .assert_error(403, "Forbidden");

    let accessory = world.tokens.accessory(MAC);
    let raw: Vec<u8> = (0..=255u8).collect();
    let answer = upload(
        &world.router,
        &accessory,
        &id,
        &raw,
        "application/octet-stream",
    )
    .await;
    answer.assert_status(200);
    assert_eq!(
        answer.json()["session"]["session_status"],
        "UPLOAD_IN_PROGRESS"
    );
    let stored = objects(&world, &id).await;
    assert_eq!(stored.len(), 1);
    assert!(
        stored[0]
            .0
            .strip_prefix(&format!("{id}_"))
            .unwrap()
            .parse::<u64>()
            .is_ok(),
        "{}",
        stored[0].0
    );
    assert_eq!(stored[0].1, raw);
    upload(&world.router, &accessory, &id, b"{}", "application/json")
        .await
        .assert_error(415, "UnsupportedContentType");

    let answer = send(
        &world,
        &accessory,
        Method::PATCH,
        &format!("/v1/session/{id}"),
        Some(json!({"session_status": "UPLOAD_COMPLETE"})),
    )
    .await;
    assert_eq!(
        answer.json()["session"]["session_status"],
        "UPLOAD_COMPLETE"
    );
    // Backwards is refused, and that upload stores nothing.
    let message = upload(
        &world.router,
        &accessory,
        &id,
        b"late",
        "application/octet-stream",
    )
    .await
    .assert_error(409, "DuplicateEntity");
    assert_eq!(
        message,
        format!("session {id} is UPLOAD_COMPLETE; it cannot move back to UPLOAD_IN_PROGRESS")
    );
    assert_eq!(objects(&world, &id).await.len(), 1);
    let message = send(
        &world,
        &accessory,
        Method::PATCH,
        &format!("/v1/session/{id}"),
        Some(json!({"session_status": "PROCESSING_COMPLETE"})),
    )
    .await
    .assert_error(400, "InvalidSchema");
    assert_eq!(
        message,
        "session_status: only UPLOAD_COMPLETE may be set here"
    );
}

#[tokio::test]
async fn a_repeated_create_answers_the_first_session() {
    let world = world().await;
    let first = create(&world, "2026-03-05T10:00:00Z").await;
    let id = first["id"].as_str().unwrap().to_owned();
    let accessory = world.tokens.accessory(MAC);
    upload(
        &world.router,
        &accessory,
        &id,
        b"data",
        "application/octet-stream",
    )
    .await
    .assert_status(200);

    // Firmware lost the answer and sends it again, its sensors in another order and its date
    // with an offset: the same session, as it now is, and no second one.
    let again = send(&world, &accessory, Method::POST, "/v1/session",
        Some(json!({"event_date": "2026-03-05T11:00:00+01:00", "sensors": ["aa:bb:cc:dd:ee:02", "AA:BB:CC:DD:EE:01"]}))).await;
    again.assert_status(201);
    let again = again.json()["session"].clone();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["created_date"], first["created_date"]);
    assert_eq!(again["sensor_ids"], first["sensor_ids"]);
    assert_eq!(again["session_status"], "UPLOAD_IN_PROGRESS");
    let listed = send(
        &world,
        &world.tokens.user(world.owner),
        Method::POST,
        "/v1/status",
        Some(json!({"start_date": "2026-03-05T00:00:00Z", "end_date": "2026-03-06T00:00:00Z"})),
    )
    .await;
    assert_eq!(
        listed.json()["sessions"]["UPLOAD_IN_PROGRESS"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Another event date is another session.
    let other = create(&world, "2026-03-05T10:00:01Z").await;
    assert_ne!(other["id"], first["id"]);
}

#[tokio::test]
async fn concurrent_writers_never_move_a_session_back_or_lose_an_upload() {
    let world = world().await;
    let id = create(&world, "2026-03-02T10:00:00Z").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let accessory = world.tokens.accessory(MAC);
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..16u8 {
        let (router, token, session) = (world.router.clone(), accessory.clone(), id.clone());
        tasks.spawn(async move {
            let answer = upload(
                &router,
                &token,
                &session,
                &[n; 32],
                "application/octet-stream",
            )
            .await;
            (Some(n), answer.status.as_u16())
        });
        if n == 8 {
            let (router, token, id) = (world.router.clone(), accessory.clone(), id.clone());
            tasks.spawn(async move {
                let answer = call_as(
                    &router,
                    &token,
                    Method::PATCH,
                    &format!("/v1/session/{id}"),
                    Some(&json!({"session_status": "UPLOAD_COMPLETE"}).to_string()),
                )
                .await;
                (None, answer.status.as_u16())
            });
        }
    }
    let mut stored_uploads = Vec::new();
    while let Some(result) = tasks.join_next().await {
        match result.unwrap() {
            (None, status) => assert_eq!(status, 200, "completing always moves forward"),
            (Some(n), 200) => stored_uploads.push(n),
            (Some(_), status) => assert_eq!(status, 409, "an upload either lands or is refused"),
        }
    }
    let answer = send(
        &world,
        &accessory,
        Method::GET,
        &format!("/v1/session/{id}"),
        None,
    )
    .await;
    assert_eq!(
        answer.json()["session"]["session_status"],
        "UPLOAD_COMPLETE",
        "never moved back"
    );
    // Every accepted upload is stored, and nothing else is.
    let mut stored: Vec<u8> = objects(&world, &id)
        .await
        .iter()
        .map(|(_, bytes)| bytes[0])
        .collect();
    stored.sort_unstable();
    stored_uploads.sort_unstable();
    assert_eq!(stored, stored_uploads);
}

#[tokio::test]
async fn status_groups_the_users_sessions_in_the_range() {
    let world = world().await;
    let accessory = world.tokens.accessory(MAC);
    let early = create(&world, "2026-04-01T08:00:00Z").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let late = create(&world, "2026-04-03T08:00:00Z").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let outside = create(&world, "2026-05-01T08:00:00Z").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let _untouched = create(&world, "2026-04-02T08:00:00Z").await;
    for id in [&early, &late, &outside] {
        upload(
            &world.router,
            &accessory,
            id,
            b"data",
            "application/octet-stream",
        )
        .await;
    }
    send(
        &world,
        &accessory,
        Method::PATCH,
        &format!("/v1/session/{early}"),
        Some(json!({"session_status": "UPLOAD_COMPLETE"})),
    )
    .await;

    let answer = send(
        &world,
        &world.tokens.user(world.owner),
        Method::POST,
        "/v1/status",
        Some(json!({"start_date": "2026-04-01T00:00:00Z", "end_date": "2026-04-30T00:00:00Z"})),
    )
    .await;
    answer.assert_status(200);
    let groups = answer.json()["sessions"].clone();
    let ids = |status: &str| -> Vec<String> {
        groups[status]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids("UPLOAD_IN_PROGRESS"), [late]);
    assert_eq!(ids("UPLOAD_COMPLETE"), [early]);
    for empty in [
        "PROCESSING_IN_PROGRESS",
        "PROCESSING_COMPLETE",
        "PROCESSING_FAILED",
    ] {
        assert_eq!(ids(empty), Vec::<String>::new());
    }
    assert_eq!(groups.as_object().unwrap().len(), 5);

    // Another user sees none of them; an accessory may not ask.
    let answer = send(
        &world,
        &world.tokens.user(Uuid::new_v4()),
        Method::POST,
        "/v1/status",
        Some(json!({"start_date": "2026-04-01T00:00:00Z", "end_date": "2026-04-30T00:00:00Z"})),
    )
    .await;
    assert!(
        answer.json()["sessions"]["UPLOAD_IN_PROGRESS"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    send(
        &world,
        &accessory,
        Method::POST,
        "/v1/status",
        Some(json!({"start_date": "2026-04-01T00:00:00Z", "end_date": "2026-04-30T00:00:00Z"})),
    )
    .await
    .assert_error(403, "Forbidden");
}

#[tokio::test]
async fn refusals() {
    let world = world().await;
    let body = json!({"event_date": "2026-03-01T10:00:00Z", "sensors": []});
    let message = send(
        &world,
        &world.tokens.accessory(LONELY),
        Method::POST,
        "/v1/session",
        Some(body.clone()),
    )
    .await
    .assert_error(403, "Forbidden");
    assert_eq!(
        message,
        format!("accessory {LONELY} has no owner; set its owner_id before recording sessions")
    );
    let message = send(
        &world,
        &world.tokens.accessory("0a:1b:2c:3d:4e:99"),
        Method::POST,
        "/v1/session",
        Some(body.clone()),
    )
    .await
    .assert_error(403, "Forbidden");
    assert_eq!(message, "accessory 0a:1b:2c:3d:4e:99 is not registered");
    send(
        &world,
        &world.tokens.user(world.owner),
        Method::POST,
        "/v1/session",
        Some(body.clone()),
    )
    .await
    .assert_error(403, "Forbidden");
    let message = send(
        &world,
        &world.tokens.accessory(MAC),
        Method::POST,
        "/v1/session",
        Some(json!({"event_date": "2026-03-01T10:00:00Z", "sensors": ["nope"]})),
    )
    .await
    .assert_error(400, "InvalidSchema");
    assert!(
        message.starts_with("sensors[0]: invalid MAC address"),
        "{message}"
    );
    send(
        &world,
        &world.tokens.accessory(MAC),
        Method::POST,
        "/v1/session",
        Some(json!({"event_date": "yesterday", "sensors": []})),
    )
    .await
    .assert_error(400, "InvalidSchema");

    let service = service_token("x", "preprocessing");
    let message = send(
        &world,
        &service,
        Method::GET,
        "/v1/session/not-a-uuid",
        None,
    )
    .await
    .assert_error(400, "InvalidSchema");
    assert_eq!(
        message,
        "id: `not-a-uuid` is not a UUID, like 2b8c6e3a-5f0e-4d5b-9a61-1f2d3c4b5a69"
    );
    let unknown = Uuid::new_v4();
    assert_eq!(
        send(
            &world,
            &service,
            Method::GET,
            &format!("/v1/session/{unknown}"),
            None
        )
        .await
        .assert_error(404, "NoSuchEntity"),
        format!("no session {unknown}")
    );
    upload(
        &world.router,
        &service,
        &unknown.to_string(),
        b"x",
        "application/octet-stream",
    )
    .await
    .assert_error(404, "NoSuchEntity");
    send(
        &world,
        "",
        Method::GET,
        &format!("/v1/session/{unknown}"),
        None,
    )
    .await
    .assert_error(401, "Unauthorized");
}

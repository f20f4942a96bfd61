//! The harness against real processes: a Python runtime client that speaks the Runtime API
//! protocol, and processes that break it.

use std::path::PathBuf;
use std::time::Duration;

use lambda_harness::{Bootstrap, Error};

const WITHIN: Duration = Duration::from_secs(20);

fn python() -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("python3"))
        .find(|path| path.is_file())
        .expect("python3 is not on PATH: the harness tests run a Python runtime client")
}

fn client() -> Bootstrap {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/runtime_client.py"
    );
    Bootstrap::new(python()).arg(script)
}

/// Tiny JSON reading without a JSON library: the value after `"key":` up to the next `,` or `}`.
fn field<'a>(json: &'a str, key: &str) -> &'a str {
    let start = json
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("no {key} in {json}"))
        + key.len()
        + 4;
    let rest = &json[start..];
    let end = rest.find([',', '}']).unwrap_or(rest.len());
    rest[..end].trim()
}

#[test]
fn hands_events_to_a_runtime_client_and_times_them() {
    let mut running = client()
        .function_name("echo-dev-api")
        .memory_mb(256)
        .env("SETTING", "from the function's configuration")
        .start(WITHIN)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(running.cold_init > Duration::ZERO);

    for n in 1..=3 {
        let event = format!(r#"{{"n": {n}}}"#);
        let invocation = running.invoke(event.as_bytes(), WITHIN).unwrap();
        let response = String::from_utf8(invocation.response).unwrap();
        assert!(
            response.contains(&format!(r#""echo": {{"n": {n}}}"#)),
            "{response}"
        );
        assert_eq!(
            field(&response, "request_id"),
            format!("\"{}\"", invocation.request_id)
        );
        assert!(invocation.request_id.ends_with(&format!("{n:012x}")));
        assert_eq!(field(&response, "function"), "\"echo-dev-api\"");
        assert_eq!(field(&response, "memory"), "\"256\"");
        assert_eq!(
            field(&response, "setting"),
            "\"from the function's configuration\""
        );
        // cargo sets this for the test process; Lambda's environment must not inherit it.
        assert!(std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        assert_eq!(
            field(&response, "leaked"),
            "null",
            "the host's environment leaked in"
        );
        // Lambda runs a bootstrap in the directory that holds it; here that is the interpreter's.
        let python_dir = python().parent().unwrap().to_owned();
        assert_eq!(
            field(&response, "cwd"),
            format!("\"{}\"", python_dir.display())
        );
        let deadline: u128 = field(&response, "deadline_ms").parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis();
        assert!(
            deadline > now && deadline <= now + 30_000,
            "{deadline} vs {now}"
        );
        assert!(invocation.latency > Duration::ZERO);
        assert!(invocation.latency < WITHIN);
    }
    let rss = running.peak_rss().expect("a running process has a VmHWM");
    assert!(rss > 1024 * 1024, "{rss} bytes");
}

#[test]
fn reports_a_failed_invocation_and_keeps_serving() {
    let mut running = client().start(WITHIN).unwrap_or_else(|e| panic!("{e}"));
    let error = running.invoke(br#"{"fail": true}"#, WITHIN).unwrap_err();
    let Error::Function {
        error_type, body, ..
    } = &error
    else {
        panic!("not a function error: {error}")
    };
    assert_eq!(error_type.as_deref(), Some("Unhandled"));
    assert!(body.contains("asked to fail"), "{body}");
    let invocation = running.invoke(b"{}", WITHIN).unwrap();
    assert!(String::from_utf8_lossy(&invocation.response).contains(r#""echo": {}"#));
}

#[test]
fn reports_an_init_error() {
    let error = client()
        .env("BOOTSTRAP_MODE", "init-error")
        .start(WITHIN)
        .unwrap_err();
    match &error {
        Error::Init { body, .. } => {
            assert!(body.contains("no configuration"), "{body}");
            assert_eq!(error.init_error_type(), "Runtime.Config");
        }
        // The process may exit before the harness reads the report; either way it is refused.
        Error::Exited { .. } => assert_eq!(error.init_error_type(), "Runtime.ExitError"),
        other => panic!("not an init error: {other}"),
    }
    assert!(error.output().is_some());
}

#[test]
fn rejects_a_bootstrap_that_never_polls() {
    let error = Bootstrap::new("/bin/sleep")
        .arg("60")
        .start(Duration::from_millis(300))
        .unwrap_err();
    let Error::NeverPolled { waited, .. } = &error else {
        panic!("not refused as never polling: {error}")
    };
    assert_eq!(*waited, Duration::from_millis(300));
    let message = error.to_string();
    assert!(message.contains("never polled"), "{message}");
    assert!(
        message.contains("/2018-06-01/runtime/invocation/next"),
        "{message}"
    );
}

#[test]
fn rejects_a_bootstrap_that_exits_before_polling_and_shows_why() {
    let error = Bootstrap::new(python())
        .arg("-c")
        .arg("import sys; sys.exit('FIRMWARE_TABLE is not set')")
        .start(WITHIN)
        .unwrap_err();
    let Error::Exited { status, output } = &error else {
        panic!("not refused as exited: {error}")
    };
    assert_eq!(status.code(), Some(1));
    assert!(output.contains("FIRMWARE_TABLE is not set"), "{output}");
    assert!(error.to_string().contains("FIRMWARE_TABLE is not set"));
}

#[test]
fn refuses_a_program_that_does_not_exist() {
    let error = Bootstrap::new("/nonexistent/bootstrap")
        .start(WITHIN)
        .unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error}");
    assert!(
        error.to_string().contains("/nonexistent/bootstrap"),
        "{error}"
    );
}

//! Every probe a service declares goes to a route the service has. A probe to nowhere would be
//! answered by the contract's 404 `UnknownEndpoint` on every release, so it could never pass (or,
//! declared with status 404, never check anything); it is refused here, before any deploy.

use super::roles::rust_sources;
use crate::workspace::Probe;

/// The paths a service's source routes (`.route("/misc/time", ...)`), relative to `/v1`.
fn routes(source: &str) -> Vec<String> {
    let compact: String = source.chars().filter(|c| !c.is_whitespace()).collect();
    compact
        .split(".route(\"")
        .skip(1)
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_owned()))
        .collect()
}

/// Whether `route` (with `{name}` segments) takes the probe's path (`/v1/...`, no query).
fn takes(route: &str, probe: &Probe) -> bool {
    let path = probe.path.split('?').next().unwrap_or_default();
    let path = path.strip_prefix("/v1").unwrap_or(path);
    let (route, path): (Vec<&str>, Vec<&str>) =
        (route.split('/').collect(), path.split('/').collect());
    route.len() == path.len()
        && route
            .iter()
            .zip(&path)
            .all(|(r, p)| r == p || (r.starts_with('{') && r.ends_with('}') && !p.is_empty()))
}

/// The probes no route takes.
fn unrouted<'a>(probes: &'a [Probe], routes: &[String]) -> Vec<&'a Probe> {
    probes
        .iter()
        .filter(|probe| !routes.iter().any(|route| takes(route, probe)))
        .collect()
}

#[test]
fn every_probe_goes_to_a_route_its_service_has() {
    let workspace = crate::local::metadata::workspace(Some(&super::repo().join("Cargo.toml")))
        .expect("the workspace loads");
    let mut problems = Vec::new();
    for service in &workspace.services {
        let routes = routes(&rust_sources(&service.manifest_path.with_file_name("src")));
        assert!(!routes.is_empty(), "{}: no routes found", service.name);
        for probe in unrouted(&service.probes, &routes) {
            problems.push(format!(
                "{}: the probe `{}` goes to no route of the service (its routes: {})",
                service.name,
                probe.label(),
                routes.join(", ")
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_route_check_reads_routes_and_catches_a_probe_to_nowhere() {
    let source = "kit::Routes::new()\n    .route(\"/misc/time\", get(time))\n    .route(\n        \
                  \"/alerts/{user_id}\",\n        get(list),\n    )";
    let routes = routes(source);
    assert_eq!(routes, ["/misc/time", "/alerts/{user_id}"]);
    let probe = |path: &str| -> Probe {
        serde_json::from_value(serde_json::json!({"path": path, "status": 200})).unwrap()
    };
    let probes = [
        probe("/v1/misc/time"),
        probe("/v1/alerts/2b8c6e3a"),
        probe("/v1/misc/tiem"),
        probe("/v1/alerts/"),
        probe("/v1/alerts/a/b"),
    ];
    let labels: Vec<String> = unrouted(&probes, &routes)
        .iter()
        .map(|p| p.label())
        .collect();
    assert_eq!(
        labels,
        [
            "GET /v1/misc/tiem (200)",
            "GET /v1/alerts/ (200)",
            "GET /v1/alerts/a/b (200)"
        ]
    );
}

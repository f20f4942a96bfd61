//! What the Lambda benchmarks measure, and how they get it ready: each service's subject (its
//! probes and seed), the function built for this machine in the release profile and zipped as
//! `package` zips it, configured as Lambda would run it against the emulator; and the machine the
//! figures come from.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use lambda_harness::Bootstrap;
use serde::Serialize;
use xshell::Shell;

use crate::environments::Profile;
use crate::local::emulator::CREDENTIALS;
use crate::local::provision::{self, Needs};
use crate::local::secrets;
use crate::local::seed::{self, Seed};
use crate::progress::Progress;
use crate::release::artifact::{ENTRY, unzip_bootstrap, write_atomically, zip_bootstrap};
use crate::release::compile::Tools;
use crate::workspace::{Probe, Service, Workspace};
use gate::event::Stage;

/// What the benchmark sends a service and what it gives it, all from the service's own
/// `[package.metadata.lambda]`: its probes (the requests to time), and for a local run the values
/// of variables its template builds from stack parameters and the items its store probes read.
#[derive(Debug)]
pub(super) struct Subject {
    pub(super) probes: Vec<Probe>,
    seed: Seed,
}

pub(super) fn subject(service: &Service) -> anyhow::Result<Subject> {
    if !service.probes.iter().any(|p| !p.store) {
        bail!(
            "`bench lambda` needs a probe that reads no store for service `{}`: add one to \
             [[package.metadata.lambda.probes]] in {}",
            service.name,
            service.manifest_path.display()
        );
    }
    let seed = match &service.local.seed {
        Some(path) => seed::read_seed(path)?,
        None => Seed::new(),
    };
    Ok(Subject {
        probes: service.probes.clone(),
        seed,
    })
}

/// The secrets a measured function reads, in the emulator's Secrets Manager, by ARN: a database
/// URL (`DATABASE_URL`, else one nothing listens on: the measured routes never reach the
/// database) and a fresh service-token secret.
pub(super) struct Secrets {
    database: String,
    service: String,
}

impl Secrets {
    pub(super) fn put(
        runtime: &tokio::runtime::Runtime,
        sdk: &aws_config::SdkConfig,
    ) -> anyhow::Result<Secrets> {
        let database = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://bench@127.0.0.1:9/bench".to_owned());
        let database = runtime.block_on(secrets::put_secret(sdk, "bench/database", &database))?;
        let secret = format!(
            "bench-only-{:032}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        );
        let service = runtime.block_on(secrets::put_secret(sdk, "bench/service-token", &secret))?;
        Ok(Secrets { database, service })
    }
}

/// `bootstrap` as Lambda would run `function` of `service`, against the emulator: the stores its
/// template declares created there (and seeded), its environment in terms of them, its memory and
/// timeout.
pub(super) fn configured(
    bootstrap: Bootstrap,
    workspace: &Workspace,
    service: &Service,
    function: &crate::workspace::Function,
    (runtime, sdk, endpoint): (&tokio::runtime::Runtime, &aws_config::SdkConfig, &str),
    secrets: &Secrets,
    progress: Progress,
) -> anyhow::Result<Bootstrap> {
    let needs = Needs::for_service(workspace, &service.name)?;
    let scope = provision::SERVE_SCOPE;
    let names = runtime.block_on(provision::provision(
        sdk,
        &service.name,
        scope,
        &needs,
        progress,
    ))?;
    let seed = subject(service)?.seed;
    runtime.block_on(seed::put_seed(sdk, &service.name, scope, &seed, progress))?;
    let (env, _) = needs.environment(&names, Some(&secrets.database), Some(&secrets.service));
    let region = crate::aws::region_of(sdk);
    let mut bootstrap = bootstrap
        .function_name(format!("{}-dev-{}", service.name, function.name))
        .memory_mb(function.memory.unwrap_or(128))
        .timeout(Duration::from_secs(function.timeout.unwrap_or(30).into()))
        .env("AWS_ENDPOINT_URL", endpoint)
        .env("AWS_ACCESS_KEY_ID", CREDENTIALS)
        .env("AWS_SECRET_ACCESS_KEY", CREDENTIALS)
        .env("AWS_REGION", &region)
        .env("AWS_DEFAULT_REGION", &region);
    for (name, value) in env.iter().chain(&service.local.env) {
        bootstrap = bootstrap.env(name, value);
    }
    Ok(bootstrap)
}

/// Builds every function for this machine, zips each `bootstrap` as `package` does, and unzips it
/// into `target/bench/lambda/<service>/<function>/bootstrap`.
#[allow(clippy::type_complexity)]
pub(super) fn build<'s>(
    workspace: &Workspace,
    services: &[&'s Service],
    sh: &Shell,
    tools: &mut Tools,
    profile: Profile,
    install: bool,
    progress: Progress,
) -> anyhow::Result<Vec<Vec<(&'s crate::workspace::Function, PathBuf, u64)>>> {
    let target = tools.host.clone();
    let bins: Vec<String> = services
        .iter()
        .flat_map(|s| s.functions.iter().map(|f| f.bin.clone()))
        .collect();
    if install {
        tools.install(sh, &workspace.root, &[target.as_str()])?;
    }
    let builder = tools.builder_for(&target, install)?;
    let manifest = workspace.root.join("Cargo.toml");
    let command = tools.command(builder, &manifest, &target, profile, &bins);
    progress.note(&format!(
        "building {} for {target}, this machine ({profile} profile, as package builds)",
        bins.join(", ")
    ));
    tools.run(sh, &workspace.root, &target, &command)?;

    let mut built = Vec::new();
    for service in services {
        let mut functions = Vec::new();
        for function in &service.functions {
            let binary = workspace
                .target_dir
                .join(&target)
                .join(profile.as_str())
                .join(&function.bin);
            let bytes =
                std::fs::read(&binary).with_context(|| format!("reading {}", binary.display()))?;
            let zip = zip_bootstrap(&bytes, profile)?;
            let dir = workspace
                .target_dir
                .join("bench/lambda")
                .join(&service.name)
                .join(&function.name);
            write_atomically(&dir.join("function.zip"), &zip)?;
            let bootstrap = dir.join(ENTRY);
            unzip_bootstrap(&zip, &bootstrap)?;
            functions.push((function, bootstrap, zip.len() as u64));
        }
        built.push(functions);
    }
    Ok(built)
}

#[derive(Debug, Serialize)]
pub(super) struct Machine {
    pub(super) cpus: usize,
    pub(super) cpu: String,
    pub(super) memory_gib: f64,
    pub(super) os: String,
    pub(super) architecture: String,
    pub(super) toolchain: String,
}

pub(super) fn machine(tools: &Tools) -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let os = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|rest| {
                rest.trim_start_matches([' ', '\t', ':', '='])
                    .trim_matches('"')
                    .trim()
                    .to_owned()
            })
    };
    Machine {
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
        cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
        memory_gib: field(&meminfo, "MemTotal")
            .and_then(|kib| kib.trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0),
        os: field(&os, "PRETTY_NAME").unwrap_or_else(|| std::env::consts::OS.into()),
        architecture: std::env::consts::ARCH.to_owned(),
        toolchain: tools.toolchain.clone(),
    }
}

pub(super) fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The REST proxy event for `probe` on the service's domain, as the local gateway builds it:
/// what both benchmarks send.
pub(super) fn event(probe: &Probe) -> anyhow::Result<Vec<u8>> {
    let request = probe.request("api.dev.biometrix.example");
    let event = gate::event::event(&request, &stage(), "bench-request", "127.0.0.1")
        .map_err(anyhow::Error::msg)?;
    Ok(serde_json::to_vec(&event)?)
}

pub(super) fn stage() -> Stage {
    Stage {
        name: "v1".into(),
        api_id: "bench".into(),
        account_id: "123456789012".into(),
        binary_media_types: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_of_the_workspace_declares_what_the_benchmark_needs() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
        let workspace = crate::local::metadata::workspace(Some(&root)).unwrap();
        assert!(workspace.services.len() >= 4);
        for service in &workspace.services {
            let subject = subject(service).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(!subject.probes.is_empty(), "{}", service.name);
            let needs = Needs::for_service(&workspace, &service.name).unwrap();
            for table in subject.seed.keys() {
                assert!(
                    needs.tables.contains_key(table),
                    "{}: {table}",
                    service.name
                );
            }
        }
        let mut bare = workspace.services[0].clone();
        bare.probes.retain(|p| p.store);
        let error = subject(&bare).unwrap_err().to_string();
        assert!(
            error.contains("[[package.metadata.lambda.probes]]"),
            "{error}"
        );
    }
}

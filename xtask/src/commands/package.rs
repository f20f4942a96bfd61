//! `cargo xtask package <service>... <env>`: cross-compile, verify, and zip each function into a
//! reproducible artifact named by its SHA-256, then write the manifest that publish and deploy read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use xshell::Shell;

use crate::artifact::{sha256_hex, write_atomically, zip_bootstrap};
use crate::compile::Tools;
use crate::elf::ElfFacts;
use crate::manifest::{
    Artifact, Build, MANIFEST, Plan, Source, artifact_key, artifact_key_parameter,
};
use crate::names::Environment;
use crate::progress::{Progress, print_json};
use crate::workspace::{Service, Workspace};

/// Cross-compile services for Lambda and zip them as content-addressed artifacts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask package hardware dev\n  cargo xtask package --all dev --json\n  \
                        cargo xtask package hardware users qa --dry-run"
)]
pub struct Package {
    /// The services to package, then the environment (dev, qa or production).
    #[arg(value_name = "SERVICE... ENV", required = true)]
    pub names: Vec<String>,
    /// Package every service in the workspace; then only the environment is given.
    #[arg(long)]
    pub all: bool,
    /// Print the plan and stop: nothing is built or written.
    #[arg(long)]
    pub dry_run: bool,
    /// Print the plan (or, after the work, the manifest) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Install missing build tools: cargo-zigbuild (with zig) into .venv, and Rust targets with rustup.
    #[arg(long)]
    pub install_tools: bool,
}

impl Package {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = select(workspace, &self.names, self.all)?;
        let sh = Shell::new()?;
        let mut tools = Tools::detect(&sh, &workspace.root)?;
        let plan = plan(
            workspace,
            &services,
            environment,
            &tools,
            self.install_tools,
        )?;
        if self.dry_run {
            return print(&plan, self.json);
        }
        let done = execute(
            &sh,
            workspace,
            plan,
            &mut tools,
            self.install_tools,
            progress,
        )?;
        print(&done, self.json)
    }
}

/// Splits `SERVICE... ENV` (or `--all ENV`) into known services and an environment.
pub fn select<'w>(
    workspace: &'w Workspace,
    names: &[String],
    all: bool,
) -> anyhow::Result<(Vec<&'w Service>, Environment)> {
    let Some((environment, services)) = names.split_last() else {
        bail!(
            "name the services and the environment, like `hardware dev`, or pass --all with the environment"
        );
    };
    let environment: Environment = environment.parse()?;
    let services: Vec<&Service> = match (all, services.is_empty()) {
        (true, true) => workspace.services.iter().collect(),
        (true, false) => {
            bail!("--all packages every service: give only the environment, like `--all dev`")
        }
        (false, true) => {
            let example = workspace
                .services
                .first()
                .map_or("hardware", |s| s.name.as_str());
            bail!(
                "name at least one service before the environment, like `{example} {environment}` \
                 (known services are {}), or pass --all",
                workspace.known_services()
            )
        }
        (false, false) => services
            .iter()
            .map(|name| workspace.service(name))
            .collect::<Result<_, _>>()?,
    };
    if services.is_empty() {
        bail!("this workspace has no services: no crate declares [package.metadata.lambda]");
    }
    Ok((services, environment))
}

/// What `package` will do, computed before doing any of it.
pub fn plan(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    tools: &Tools,
    will_install: bool,
) -> anyhow::Result<Plan> {
    let mut functions = Vec::new();
    let mut bins_by_target: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for service in services {
        for function in &service.functions {
            let target = function.architecture.target();
            let bins = bins_by_target.entry(target).or_default();
            if !bins.contains(&function.bin) {
                bins.push(function.bin.clone());
            }
            functions.push(Artifact {
                service: service.name.clone(),
                function: function.name.clone(),
                architecture: function.architecture,
                target: target.to_owned(),
                binary: workspace
                    .target_dir
                    .join(target)
                    .join("release")
                    .join(&function.bin),
                binary_sha256: None,
                zip: None,
                sha256: None,
                size: None,
                key: None,
                parameter: artifact_key_parameter(&function.name),
            });
        }
    }
    let manifest = workspace.root.join("Cargo.toml");
    let builds = bins_by_target
        .into_iter()
        .map(|(target, bins)| {
            let builder = tools.builder_for(target, will_install)?;
            let command = tools.command(builder, &manifest, target, &bins);
            Ok(Build {
                target: target.to_owned(),
                builder,
                bins,
                command: command
                    .iter()
                    .map(|arg| arg.to_string_lossy().into_owned())
                    .collect(),
            })
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Plan {
        environment,
        profile: "release".to_owned(),
        source: None,
        builds,
        functions,
    })
}

/// Builds, verifies every binary, then zips and writes manifests. Nothing is written unless every
/// build and check passed.
pub fn execute(
    sh: &Shell,
    workspace: &Workspace,
    mut plan: Plan,
    tools: &mut Tools,
    install: bool,
    progress: Progress,
) -> anyhow::Result<Plan> {
    let targets: Vec<&str> = plan.builds.iter().map(|b| b.target.as_str()).collect();
    if install {
        tools.install(sh, &workspace.root, &targets)?;
    }
    for build in &plan.builds {
        progress.note(&format!(
            "building {} for {} ({:?})",
            build.bins.join(", "),
            build.target,
            build.builder
        ));
        let command = tools.command(
            build.builder,
            &workspace.root.join("Cargo.toml"),
            &build.target,
            &build.bins,
        );
        if let Err(error) = tools.run(sh, &workspace.root, &command) {
            return Err(match tools.missing_target(sh, &targets) {
                Some(missing) => anyhow::anyhow!(missing),
                None => error,
            });
        }
    }

    let step = progress.step("verifying the executables");
    let mut binaries = Vec::new();
    let mut refusals = Vec::new();
    for artifact in &plan.functions {
        let bytes = std::fs::read(&artifact.binary).with_context(|| {
            format!(
                "reading {}, which the build should have produced",
                artifact.binary.display()
            )
        })?;
        let problems = ElfFacts::read(&bytes)?.problems(artifact.architecture);
        for problem in problems {
            refusals.push(format!(
                "{}/{} ({}): {problem}",
                artifact.service,
                artifact.function,
                artifact.binary.display()
            ));
        }
        binaries.push(bytes);
    }
    if !refusals.is_empty() {
        bail!("refusing to package:\n  {}", refusals.join("\n  "));
    }
    step.done("verified the executables");

    plan.source = Some(source(sh, &workspace.root, &tools.toolchain));
    // What the last run left, read once: a zip whose binary did not change is reused.
    let mut previous: Vec<Artifact> = Vec::new();
    for service in plan.services() {
        if let Ok(manifest) = Plan::read(&workspace.lambda_dir(service).join(MANIFEST)) {
            previous.extend(manifest.functions);
        }
    }
    for (artifact, binary) in plan.functions.iter_mut().zip(&binaries) {
        let step = progress.step(&format!(
            "zipping {}/{}",
            artifact.service, artifact.function
        ));
        let binary_sha256 = sha256_hex(binary);
        let dir = workspace
            .lambda_dir(&artifact.service)
            .join(&artifact.function);
        let (sha256, size, reused) = match reusable_zip(&previous, artifact, &binary_sha256) {
            Some((sha256, size)) => (sha256, size, true),
            None => {
                let zip = zip_bootstrap(binary)?;
                let sha256 = sha256_hex(&zip);
                write_atomically(&dir.join(format!("{sha256}.zip")), &zip)?;
                (sha256, zip.len() as u64, false)
            }
        };
        artifact.zip = Some(dir.join(format!("{sha256}.zip")));
        artifact.key = Some(artifact_key(&artifact.service, &artifact.function, &sha256));
        artifact.binary_sha256 = Some(binary_sha256);
        artifact.sha256 = Some(sha256);
        artifact.size = Some(size);
        step.done(&format!(
            "{} {}/{} ({})",
            if reused { "unchanged" } else { "zipped" },
            artifact.service,
            artifact.function,
            human_size(size)
        ));
    }

    for service in plan.services() {
        let manifest = serde_json::to_vec_pretty(&plan.for_service(service))?;
        write_atomically(&workspace.lambda_dir(service).join(MANIFEST), &manifest)?;
    }
    Ok(plan)
}

/// The zip from the last run, when the binary is the same and the zip is still intact.
fn reusable_zip(
    previous: &[Artifact],
    artifact: &Artifact,
    binary_sha256: &str,
) -> Option<(String, u64)> {
    let before = previous.iter().find(|a| {
        a.service == artifact.service
            && a.function == artifact.function
            && a.target == artifact.target
    })?;
    if before.binary_sha256.as_deref() != Some(binary_sha256) {
        return None;
    }
    let zip = std::fs::read(before.zip.as_ref()?).ok()?;
    let size = zip.len() as u64;
    let sha256 = sha256_hex(&zip);
    (Some(&sha256) == before.sha256.as_ref()).then_some((sha256, size))
}

/// The commit, whether the tree had uncommitted changes, and the compiler: what S3 metadata records.
pub fn source(sh: &Shell, root: &Path, toolchain: &str) -> Source {
    let _dir = sh.push_dir(root);
    let commit = xshell::cmd!(sh, "git rev-parse HEAD")
        .quiet()
        .ignore_stderr()
        .read();
    let dirty = xshell::cmd!(sh, "git status --porcelain")
        .quiet()
        .ignore_stderr()
        .read();
    Source {
        dirty: commit.is_err() || dirty.map_or(true, |status| !status.trim().is_empty()),
        commit: commit.unwrap_or_else(|_| "unknown".to_owned()),
        toolchain: toolchain.to_owned(),
    }
}

fn print(plan: &Plan, json: bool) -> anyhow::Result<()> {
    use std::io::Write;
    if json {
        return print_json(plan);
    }
    let mut out = std::io::stdout().lock();
    if plan.source.is_none() {
        writeln!(
            out,
            "plan for {} ({} profile):",
            plan.environment, plan.profile
        )?;
        for build in &plan.builds {
            writeln!(out, "  build: {}", build.command.join(" "))?;
        }
    }
    for artifact in &plan.functions {
        match (&artifact.zip, &artifact.key, artifact.size) {
            (Some(zip), Some(key), Some(size)) => {
                writeln!(
                    out,
                    "{}/{} ({}, {})",
                    artifact.service,
                    artifact.function,
                    artifact.architecture,
                    human_size(size)
                )?;
                writeln!(out, "  zip: {}", zip.display())?;
                writeln!(out, "  key: {key}")?;
            }
            _ => writeln!(
                out,
                "  {}/{} ({}): {} → zip under {}",
                artifact.service,
                artifact.function,
                artifact.architecture,
                artifact.binary.display(),
                artifact
                    .binary
                    .parent()
                    .and_then(Path::parent)
                    .map_or_else(String::new, |p| p.display().to_string()),
            )?,
        }
    }
    Ok(())
}

pub fn human_size(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

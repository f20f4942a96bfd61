//! Packaging: the plan (what will be built, computed before any of it), then the build, the ELF
//! checks and the reproducible zips, and the manifests that publish and deploy read.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, bail};
use xshell::Shell;

use super::artifact::{sha256_hex, write_atomically, zip_bootstrap};
use super::compile::Tools;
use super::elf::ElfFacts;
use super::manifest::{
    Artifact, Build, MANIFEST, Manifest, Plan, Planned, Source, artifact_key_parameter,
};
use crate::environments::Environment;
use crate::environments::Profile;
use crate::names::human_size;
use crate::progress::Progress;
use crate::workspace::{Service, Workspace};

/// Plans and builds `services`: a no-op (zips reused) when nothing changed.
pub fn build(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    profile: Profile,
    install_tools: bool,
    progress: Progress,
) -> anyhow::Result<Manifest> {
    let sh = Shell::new()?;
    let mut tools = Tools::detect(&sh, &workspace.root)?;
    let plan = plan(
        workspace,
        services,
        environment,
        profile,
        &tools,
        install_tools,
    )?;
    execute(&sh, workspace, plan, &mut tools, install_tools, progress)
}

/// What `package` will do, computed before doing any of it.
pub fn plan(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
    profile: Profile,
    tools: &Tools,
    will_install: bool,
) -> anyhow::Result<Plan> {
    let mut functions = Vec::new();
    let mut bins_by_target: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for service in services {
        for function in workspace.released_functions(service) {
            let target = function.architecture.target();
            let bins = bins_by_target.entry(target).or_default();
            if !bins.contains(&function.bin) {
                bins.push(function.bin.clone());
            }
            functions.push(Planned {
                service: service.name.clone(),
                function: function.name.clone(),
                architecture: function.architecture,
                target: target.to_owned(),
                binary: workspace
                    .target_dir
                    .join(target)
                    .join(profile.as_str())
                    .join(&function.bin),
                parameter: artifact_key_parameter(&function.name),
            });
        }
    }
    let manifest = workspace.root.join("Cargo.toml");
    let builds = bins_by_target
        .into_iter()
        .map(|(target, bins)| {
            let builder = tools.builder_for(target, will_install)?;
            let command = tools.command(builder, &manifest, target, profile, &bins);
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
        profile,
        builds,
        functions,
    })
}

/// Builds, verifies every binary, then zips and writes manifests. Nothing is written unless every
/// build and check passed.
pub fn execute(
    sh: &Shell,
    workspace: &Workspace,
    plan: Plan,
    tools: &mut Tools,
    install: bool,
    progress: Progress,
) -> anyhow::Result<Manifest> {
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
            plan.profile,
            &build.bins,
        );
        if let Err(error) = tools.run(sh, &workspace.root, &build.target, &command) {
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

    let source = source(sh, &workspace.root, &tools.toolchain);
    // What the last run left, read once: a zip whose binary did not change is reused.
    let mut previous: Vec<Artifact> = Vec::new();
    for service in plan.services() {
        if let Ok(manifest) = Manifest::read(&workspace.lambda_dir(service).join(MANIFEST)) {
            previous.extend(manifest.functions);
        }
    }
    let mut functions = Vec::new();
    for (planned, binary) in plan.functions.iter().zip(&binaries) {
        let step = progress.step(&format!("zipping {}/{}", planned.service, planned.function));
        let binary_sha256 = sha256_hex(binary);
        let dir = workspace
            .lambda_dir(&planned.service)
            .join(&planned.function);
        let (sha256, size, reused) = match reusable_zip(&previous, planned, &binary_sha256) {
            Some((sha256, size)) => (sha256, size, true),
            None => {
                let zip = zip_bootstrap(binary, plan.profile)?;
                let sha256 = sha256_hex(&zip);
                write_atomically(&dir.join(format!("{sha256}.zip")), &zip)?;
                (sha256, zip.len() as u64, false)
            }
        };
        let zip = dir.join(format!("{sha256}.zip"));
        step.done(&format!(
            "{} {}/{} ({})",
            if reused { "unchanged" } else { "zipped" },
            planned.service,
            planned.function,
            human_size(size)
        ));
        functions.push(planned.packaged(binary_sha256, zip, sha256, size));
    }
    let manifest = Manifest {
        environment: plan.environment,
        profile: plan.profile,
        source,
        builds: plan.builds,
        functions,
    };
    for service in manifest.services() {
        let text = serde_json::to_vec_pretty(&manifest.for_service(service))?;
        write_atomically(&workspace.lambda_dir(service).join(MANIFEST), &text)?;
    }
    Ok(manifest)
}

/// The zip from the last run, when the binary is the same and the zip is still intact.
fn reusable_zip(
    previous: &[Artifact],
    planned: &Planned,
    binary_sha256: &str,
) -> Option<(String, u64)> {
    let before = previous.iter().find(|a| {
        a.service == planned.service && a.function == planned.function && a.target == planned.target
    })?;
    if before.binary_sha256 != binary_sha256 {
        return None;
    }
    let zip = std::fs::read(&before.zip).ok()?;
    let size = zip.len() as u64;
    let sha256 = sha256_hex(&zip);
    (sha256 == before.sha256).then_some((sha256, size))
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

/// What `package` left for `services`, to deploy without building (`--prebuilt`, as the release
/// workflow's deploy job does, where nothing may compile): refused unless every manifest was built
/// from HEAD with no uncommitted changes, for `environment`, and every zip still hashes to its key.
pub fn prebuilt(
    workspace: &Workspace,
    services: &[&Service],
    environment: Environment,
) -> anyhow::Result<Manifest> {
    let head = source(&Shell::new()?, &workspace.root, "");
    if head.dirty {
        bail!(
            "--prebuilt deploys only a clean checkout of the commit that was packaged, and this \
             tree has uncommitted changes (or is not a git checkout); commit them, or deploy \
             without --prebuilt"
        );
    }
    let mut merged: Option<Manifest> = None;
    for service in services {
        let path = workspace.lambda_dir(&service.name).join(MANIFEST);
        let plan = Manifest::read(&path).with_context(|| {
            format!(
                "nothing is packaged for {}: run `cargo xtask package {} {environment}` first \
                 (in the release workflow, the build job's artifact)",
                service.name, service.name
            )
        })?;
        let built = &plan.source;
        if built.dirty || built.commit != head.commit {
            bail!(
                "the packaged {} ({}) was built from {}{}, not from HEAD {} as committed: \
                 package it again from HEAD",
                service.name,
                path.display(),
                built.commit,
                if built.dirty {
                    " with uncommitted changes"
                } else {
                    ""
                },
                crate::names::short(&head.commit)
            );
        }
        if plan.environment != environment {
            bail!(
                "the packaged {} is for {}, not {environment}: package it for {environment}",
                service.name,
                plan.environment
            );
        }
        for function in workspace.released_functions(service) {
            let artifact = plan
                .functions
                .iter()
                .find(|a| a.function == function.name)
                .with_context(|| {
                    format!(
                        "{} has no zip of function {}: package it again",
                        path.display(),
                        function.name
                    )
                })?;
            let (zip, key) = (&artifact.zip, &artifact.key);
            let bytes = std::fs::read(zip).with_context(|| format!("reading {}", zip.display()))?;
            let actual = sha256_hex(&bytes);
            if Some(actual.as_str()) != super::integrity::named_sha256(key) {
                bail!(
                    "{} hashes to {actual}, not to the {key} its manifest names: it changed since \
                     it was packaged; package again",
                    zip.display()
                );
            }
        }
        merged = Some(match merged {
            None => plan,
            Some(mut all) => {
                all.builds.extend(plan.builds);
                all.functions.extend(plan.functions);
                all
            }
        });
    }
    merged.context("no service to deploy")
}

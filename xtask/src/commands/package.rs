//! `cargo xtask package <service>... <env>`: cross-compile, verify, and zip each function into a
//! reproducible artifact named by its SHA-256, then write the manifest that publish and deploy read.

use std::path::Path;

use xshell::Shell;

use crate::cli::{BuildProfile, Install, Output, Selection};
use crate::names::human_size;
use crate::progress::{Progress, print_result};
use crate::release::compile::Tools;
use crate::release::manifest::{Manifest, Plan};
use crate::release::package;
use crate::workspace::Workspace;

/// Cross-compile services for Lambda and zip them as content-addressed artifacts.
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  cargo xtask package hardware dev\n  cargo xtask package --all dev --json\n  \
                        cargo xtask package hardware users qa --dry-run"
)]
pub struct Package {
    #[command(flatten)]
    selection: Selection,
    /// Print the plan and stop: nothing is built or written.
    #[arg(long)]
    dry_run: bool,
    #[command(flatten)]
    output: Output,
    #[command(flatten)]
    install: Install,
    #[command(flatten)]
    profile: BuildProfile,
}

impl Package {
    pub fn run(self, workspace: &Workspace, progress: Progress) -> anyhow::Result<()> {
        let (services, environment) = self.selection.resolve(workspace)?;
        let sh = Shell::new()?;
        let mut tools = Tools::detect(&sh, &workspace.root)?;
        let plan = package::plan(
            workspace,
            &services,
            environment,
            self.profile.or_default(environment),
            &tools,
            self.install.tools,
        )?;
        if self.dry_run {
            return print_result(&plan, self.output.json, plan_text);
        }
        let manifest = package::execute(
            &sh,
            workspace,
            plan,
            &mut tools,
            self.install.tools,
            progress,
        )?;
        print_result(&manifest, self.output.json, manifest_text)
    }
}

/// The plan, before the work, as people read it.
pub fn plan_text(plan: &Plan) -> String {
    let mut out = format!(
        "plan for {} ({} profile):\n",
        plan.environment, plan.profile
    );
    for build in &plan.builds {
        out.push_str(&format!("  build: {}\n", build.command.join(" ")));
    }
    for planned in &plan.functions {
        out.push_str(&format!(
            "  {}/{} ({}): {} → zip under {}\n",
            planned.service,
            planned.function,
            planned.architecture,
            planned.binary.display(),
            planned
                .binary
                .parent()
                .and_then(Path::parent)
                .map_or_else(String::new, |p| p.display().to_string()),
        ));
    }
    out
}

/// The manifest, after the work, as people read it.
pub fn manifest_text(manifest: &Manifest) -> String {
    let mut out = String::new();
    for artifact in &manifest.functions {
        out.push_str(&format!(
            "{}/{} ({}, {})\n  zip: {}\n  key: {}\n",
            artifact.service,
            artifact.function,
            artifact.architecture,
            human_size(artifact.size),
            artifact.zip.display(),
            artifact.key
        ));
    }
    out
}

//! `cargo xtask package <service>... <env>`: cross-compile, verify, and zip each function into a
//! reproducible artifact named by its SHA-256, then write the manifest that publish and deploy read.

use std::path::Path;

use xshell::Shell;

use crate::cli::{BuildProfile, Install, Output, Selection};
use crate::names::human_size;
use crate::progress::{Progress, print_result};
use crate::release::compile::Tools;
use crate::release::manifest::Plan;
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
        let plan = if self.dry_run {
            plan
        } else {
            package::execute(
                &sh,
                workspace,
                plan,
                &mut tools,
                self.install.tools,
                progress,
            )?
        };
        print_result(&plan, self.output.json, text)
    }
}

/// The plan (before the work) or the manifest (after it), as people read it.
pub fn text(plan: &Plan) -> String {
    let mut out = String::new();
    if plan.source.is_none() {
        out.push_str(&format!(
            "plan for {} ({} profile):\n",
            plan.environment, plan.profile
        ));
        for build in &plan.builds {
            out.push_str(&format!("  build: {}\n", build.command.join(" ")));
        }
    }
    for artifact in &plan.functions {
        let name = format!(
            "{}/{} ({}",
            artifact.service, artifact.function, artifact.architecture
        );
        out.push_str(&match (&artifact.zip, &artifact.key, artifact.size) {
            (Some(zip), Some(key), Some(size)) => format!(
                "{name}, {})\n  zip: {}\n  key: {key}\n",
                human_size(size),
                zip.display()
            ),
            _ => format!(
                "  {name}): {} → zip under {}\n",
                artifact.binary.display(),
                artifact
                    .binary
                    .parent()
                    .and_then(Path::parent)
                    .map_or_else(String::new, |p| p.display().to_string()),
            ),
        });
    }
    out
}

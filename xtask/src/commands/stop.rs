//! `cargo xtask stop`: stop what `--local` left running for the next command, the emulator and
//! PostgreSQL.

use crate::local::emulator::Emulator;
use crate::local::postgres::Postgres;
use crate::progress::Progress;
use crate::workspace::Workspace;

/// Stop the local AWS emulator and PostgreSQL that --local commands left running
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  cargo xtask stop\n\n\
The emulator keeps its stacks, bucket and release histories in memory: they go with it, and the\n\
next --local command starts a new, empty one. PostgreSQL's data stays on disk, and is there\n\
again when a local command starts it.")]
pub struct Stop {}

impl Stop {
    pub fn run(self, workspace: &Workspace, _progress: Progress) -> anyhow::Result<()> {
        let mut stopped = 0;
        match Emulator::stop(workspace)? {
            Some(emulator) => {
                stopped += 1;
                println!(
                    "stopped the local AWS emulator at {} (pid {}): its stacks, bucket and \
                     histories are gone",
                    emulator.endpoint, emulator.pid
                );
            }
            None => println!("no local AWS emulator was running"),
        }
        match Postgres::stop(workspace)? {
            Some(server) => {
                stopped += 1;
                println!(
                    "stopped the local PostgreSQL on 127.0.0.1:{} (its data stays in {})",
                    server.port,
                    server.data.display()
                );
            }
            None => println!("no local PostgreSQL was running"),
        }
        if stopped == 0 {
            println!("nothing to stop");
        }
        Ok(())
    }
}

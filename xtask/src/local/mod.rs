//! This machine: the local AWS emulator, a local PostgreSQL, the stores a service's template
//! declares (created in the emulator, and seeded), and the processes that run them. The only layer
//! below the commands that starts long-running processes (through `process`).

pub mod account;
pub mod check;
pub mod deployed;
pub mod emulator;
pub mod gateway;
pub mod metadata;
pub mod postgres;
pub mod process;
pub mod provision;
pub mod runtime;
pub mod secrets;
pub mod seed;
pub mod state;

pub use account::{Access, Session, connect};

/// `count` random bytes from the kernel, as hex: names and secrets nobody can guess.
pub fn random_hex(count: usize) -> anyhow::Result<String> {
    use anyhow::Context;
    let mut bytes = vec![0u8; count];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut bytes)
        .context("reading /dev/urandom")?;
    Ok(crate::release::artifact::hex(&bytes))
}

/// Installs Debian's `packages` with apt-get (as root), refreshing the package lists first: a
/// fresh machine may have none. Says what failed and how to do it by hand.
pub fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let sh = xshell::Shell::new()?;
    let fail = || {
        anyhow::anyhow!(
            "apt-get could not install {list}; install them as root with `apt-get update && \
             apt-get install -y {list}`",
            list = packages.join(" ")
        )
    };
    xshell::cmd!(sh, "apt-get update -qq")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_stdout()
        .run()
        .map_err(|_| fail())?;
    xshell::cmd!(sh, "apt-get install -y -qq {packages...}")
        .env("DEBIAN_FRONTEND", "noninteractive")
        .quiet()
        .ignore_stdout()
        .run()
        .map_err(|_| fail())
}

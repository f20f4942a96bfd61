//! Checks that an executable can run as a Lambda `bootstrap` before anything is zipped:
//! the right machine, no glibc newer than Amazon Linux 2023's, and stripped.

use goblin::elf::Elf;
use goblin::elf::section_header::SHT_SYMTAB;

use crate::names::{Architecture, MAX_GLIBC};

/// What the checks need to know about an executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfFacts {
    pub machine: u16,
    /// Whether it asks for a dynamic loader (a static binary needs no glibc at all).
    pub dynamic: bool,
    /// The newest `GLIBC_x.y` symbol version it requires.
    pub newest_glibc: Option<(u32, u32)>,
    pub has_symbol_table: bool,
    pub has_debug_info: bool,
}

impl ElfFacts {
    pub fn read(bytes: &[u8]) -> anyhow::Result<ElfFacts> {
        let elf = Elf::parse(bytes).map_err(|e| anyhow::anyhow!("not an ELF executable: {e}"))?;
        let mut newest_glibc = None;
        if let Some(verneed) = &elf.verneed {
            for need in verneed.iter() {
                for aux in need.iter() {
                    let version = elf.dynstrtab.get_at(aux.vna_name).and_then(glibc_version);
                    newest_glibc = newest_glibc.max(version);
                }
            }
        }
        let section_name = |offset| elf.shdr_strtab.get_at(offset).unwrap_or_default();
        Ok(ElfFacts {
            machine: elf.header.e_machine,
            dynamic: elf.interpreter.is_some(),
            newest_glibc,
            has_symbol_table: elf.section_headers.iter().any(|s| s.sh_type == SHT_SYMTAB),
            has_debug_info: elf
                .section_headers
                .iter()
                .any(|s| section_name(s.sh_name).starts_with(".debug_")),
        })
    }

    /// Every reason this executable cannot be a `bootstrap` for `architecture`; empty when it can.
    pub fn problems(&self, architecture: Architecture) -> Vec<String> {
        let mut problems = Vec::new();
        if self.machine != architecture.elf_machine() {
            problems.push(format!(
                "it is built for {}, but the function's architecture is {architecture}",
                machine_name(self.machine)
            ));
        }
        if self.dynamic
            && let Some((major, minor)) = self.newest_glibc
            && (major, minor) > MAX_GLIBC
        {
            problems.push(format!(
                "it needs glibc {major}.{minor}, newer than the {}.{} of Amazon Linux 2023; build with cargo-zigbuild, which pins glibc",
                MAX_GLIBC.0, MAX_GLIBC.1
            ));
        }
        if self.has_symbol_table || self.has_debug_info {
            problems.push(
                "it is not stripped; the release profile must set strip = \"symbols\"".to_owned(),
            );
        }
        problems
    }
}

/// `GLIBC_2.34` → `(2, 34)`; `GLIBC_PRIVATE` and other libraries' versions → `None`.
fn glibc_version(name: &str) -> Option<(u32, u32)> {
    let mut parts = name.strip_prefix("GLIBC_")?.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

fn machine_name(machine: u16) -> String {
    match machine {
        goblin::elf::header::EM_AARCH64 => "arm64 (aarch64)".to_owned(),
        goblin::elf::header::EM_X86_64 => "x86_64".to_owned(),
        other => format!("ELF machine {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good_arm64() -> ElfFacts {
        ElfFacts {
            machine: goblin::elf::header::EM_AARCH64,
            dynamic: true,
            newest_glibc: Some((2, 34)),
            has_symbol_table: false,
            has_debug_info: false,
        }
    }

    #[test]
    fn a_good_binary_has_no_problems() {
        assert_eq!(
            good_arm64().problems(Architecture::Arm64),
            Vec::<String>::new()
        );
    }

    #[test]
    fn each_problem_is_named() {
        let facts = ElfFacts {
            newest_glibc: Some((2, 38)),
            has_symbol_table: true,
            ..good_arm64()
        };
        assert_eq!(
            facts.problems(Architecture::X86_64),
            [
                "it is built for arm64 (aarch64), but the function's architecture is x86_64",
                "it needs glibc 2.38, newer than the 2.34 of Amazon Linux 2023; build with cargo-zigbuild, which pins glibc",
                "it is not stripped; the release profile must set strip = \"symbols\"",
            ]
        );
    }

    #[test]
    fn a_static_binary_needs_no_glibc() {
        let facts = ElfFacts {
            dynamic: false,
            newest_glibc: Some((2, 99)),
            ..good_arm64()
        };
        assert!(facts.problems(Architecture::Arm64).is_empty());
    }

    #[test]
    fn glibc_versions_compare_numerically() {
        assert_eq!(glibc_version("GLIBC_2.34"), Some((2, 34)));
        assert_eq!(glibc_version("GLIBC_2.3.4"), Some((2, 3)));
        assert_eq!(glibc_version("GLIBC_PRIVATE"), None);
        assert_eq!(glibc_version("GCC_3.0"), None);
        assert!(glibc_version("GLIBC_2.4") < glibc_version("GLIBC_2.34"));
    }

    #[test]
    fn garbage_is_not_an_executable() {
        let error = ElfFacts::read(b"#!/bin/sh\necho hi\n").unwrap_err();
        assert!(
            error.to_string().starts_with("not an ELF executable"),
            "{error}"
        );
    }

    /// Compiles a C program calling `arc4random`, which glibc first offered in 2.36.
    fn compile_needing_glibc_2_36(strip: bool) -> Vec<u8> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("xtask-elf-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("main.c");
        std::fs::write(
            &source,
            "#include <stdlib.h>\nint main(void) { return (int)(arc4random() & 1); }\n",
        )
        .unwrap();
        let binary = dir.join("main");
        let sh = xshell::Shell::new().unwrap();
        let strip = if strip { &["-s"][..] } else { &[] };
        let output = xshell::cmd!(sh, "cc -O1 -o {binary} {source} {strip...}")
            .quiet()
            .ignore_status()
            .output()
            .expect("these tests need a C compiler (cc)");
        assert!(
            output.status.success(),
            "cc failed; these tests need glibc 2.36 or newer headers (for arc4random): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let bytes = std::fs::read(&binary).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
        bytes
    }

    #[test]
    fn a_real_binary_needing_a_newer_glibc_is_refused() {
        let facts = ElfFacts::read(&compile_needing_glibc_2_36(true)).unwrap();
        assert!(facts.dynamic);
        assert!(facts.newest_glibc >= Some((2, 36)), "{facts:?}");
        let problems = facts.problems(Architecture::X86_64);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("it needs glibc 2.3"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_real_unstripped_binary_is_refused() {
        let facts = ElfFacts::read(&compile_needing_glibc_2_36(false)).unwrap();
        assert!(facts.has_symbol_table);
        assert!(facts.problems(Architecture::X86_64).contains(
            &"it is not stripped; the release profile must set strip = \"symbols\"".to_owned()
        ));
    }

    #[test]
    fn a_real_binary_for_another_machine_is_refused() {
        let facts = ElfFacts::read(&compile_needing_glibc_2_36(true)).unwrap();
        assert_eq!(
            facts.machine,
            goblin::elf::header::EM_X86_64,
            "these tests run on x86_64 hosts"
        );
        assert!(facts.problems(Architecture::Arm64).contains(
            &"it is built for x86_64, but the function's architecture is arm64".to_owned()
        ));
    }
}

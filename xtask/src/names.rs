//! Names the release tool accepts, parsed once at the edge (environments, architectures,
//! `KEY=VALUE` pairs), the names it derives (a stack's, a function's: made in one place each),
//! and how it writes a few values for people (commits, sizes).

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Lambda instruction set, as Lambda names it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "snake_case")]
pub enum Architecture {
    #[default]
    Arm64,
    X86_64,
}

/// `KEY=VALUE`, as `--parameter` and `--env` take them: a non-empty key, any value.
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("`{text}` is not KEY=VALUE")),
    }
}

/// An AWS region's name as AWS spells them (`us-west-2`, `ap-southeast-1`, `us-gov-west-1`), or why
/// `text` is not one.
pub fn check_region(text: &str) -> Result<(), String> {
    let parts: Vec<&str> = text.split('-').collect();
    let letters = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let shaped = (3..=4).contains(&parts.len())
        && parts[0].len() == 2
        && parts[..parts.len() - 1].iter().all(|p| letters(p))
        && parts[parts.len() - 1].parse::<u8>().is_ok();
    match shaped {
        true => Ok(()),
        false => Err(format!(
            "`{text}` is not an AWS region: regions are named like us-west-2 or eu-central-1"
        )),
    }
}

/// An S3 bucket name by S3's rules (3 to 63 lowercase letters, digits, dots and hyphens, beginning
/// and ending with a letter or digit), or why `text` is not one.
pub fn check_bucket_name(text: &str) -> Result<(), String> {
    let allowed = text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ends = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    let valid = (3..=63).contains(&text.len())
        && allowed
        && ends(text.as_bytes().first())
        && ends(text.as_bytes().last())
        && !text.contains("..");
    match valid {
        true => Ok(()),
        false => Err(format!(
            "`{text}` is not a valid S3 bucket name: 3 to 63 lowercase letters, digits, dots and \
             hyphens, beginning and ending with a letter or digit"
        )),
    }
}

/// A span of time as people type it: `30s`, `15m`, `2h`, `30d`; `None` for anything else.
pub fn duration(text: &str) -> Option<std::time::Duration> {
    let units = [('s', 1), ('m', 60), ('h', 3_600), ('d', 86_400)];
    units.into_iter().find_map(|(unit, seconds)| {
        let count = text.strip_suffix(unit)?.parse::<u64>().ok()?;
        Some(std::time::Duration::from_secs(count.checked_mul(seconds)?))
    })
}

/// The first twelve characters of a commit, as people quote them.
pub fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// Bytes as megabytes with one decimal, as zips are reported; under 100 kB, as kilobytes.
pub fn human_size(bytes: u64) -> String {
    match bytes {
        0..100_000 => format!("{:.1} kB", bytes as f64 / 1_000.0),
        _ => format!("{:.1} MB", bytes as f64 / 1_000_000.0),
    }
}

/// The newest glibc that Amazon Linux 2023 (`provided.al2023`) ships.
pub const MAX_GLIBC: (u32, u32) = (2, 34);

impl Architecture {
    /// The Rust target that builds for this architecture on `provided.al2023`.
    pub fn target(self) -> &'static str {
        match self {
            Architecture::Arm64 => "aarch64-unknown-linux-gnu",
            Architecture::X86_64 => "x86_64-unknown-linux-gnu",
        }
    }

    /// The ELF `e_machine` of executables for this architecture.
    pub fn elf_machine(self) -> u16 {
        match self {
            Architecture::Arm64 => goblin::elf::header::EM_AARCH64,
            Architecture::X86_64 => goblin::elf::header::EM_X86_64,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Arm64 => "arm64",
            Architecture::X86_64 => "x86_64",
        }
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_bucket_names_are_checked_as_aws_names_them() {
        for region in [
            "us-west-2",
            "eu-central-1",
            "ap-southeast-1",
            "us-gov-west-1",
        ] {
            assert_eq!(check_region(region), Ok(()), "{region}");
        }
        for bad in [
            "mars-1",
            "us-west",
            "US-WEST-2",
            "uswest2",
            "us-west-2a",
            "",
        ] {
            assert!(check_region(bad).is_err(), "{bad}");
        }
        for bucket in ["biometrix-infrastructure-us-west-2", "a.b-c", "abc"] {
            assert_eq!(check_bucket_name(bucket), Ok(()), "{bucket}");
        }
        for bad in [
            "ab",
            "Bucket",
            "bucket_name",
            "-bucket",
            "bucket.",
            "a..b",
            &"a".repeat(64),
        ] {
            assert!(check_bucket_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn durations_are_counts_of_a_unit() {
        assert_eq!(
            duration("30d"),
            Some(std::time::Duration::from_secs(2_592_000))
        );
        assert_eq!(duration("0s"), Some(std::time::Duration::ZERO));
        assert_eq!(duration("15m"), Some(std::time::Duration::from_secs(900)));
        for bad in ["30", "d", "1w", "-1d", "1.5h", ""] {
            assert_eq!(duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn parameters_are_key_value() {
        assert_eq!(
            parse_key_value("DomainName=example.com"),
            Ok(("DomainName".into(), "example.com".into()))
        );
        assert_eq!(
            parse_key_value("Empty="),
            Ok(("Empty".into(), String::new()))
        );
        assert_eq!(
            parse_key_value("=x"),
            Err("`=x` is not KEY=VALUE".to_owned())
        );
        assert_eq!(
            parse_key_value("nothing"),
            Err("`nothing` is not KEY=VALUE".to_owned())
        );
    }

    #[test]
    fn architectures_map_to_lambda_targets() {
        assert_eq!(Architecture::default(), Architecture::Arm64);
        assert_eq!(Architecture::Arm64.target(), "aarch64-unknown-linux-gnu");
        assert_eq!(Architecture::X86_64.target(), "x86_64-unknown-linux-gnu");
        assert_eq!(
            serde_json::to_string(&Architecture::X86_64).unwrap(),
            "\"x86_64\""
        );
    }
}

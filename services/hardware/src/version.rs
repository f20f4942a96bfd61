//! Firmware versions, compared numerically (1.10 is newer than 1.9).

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

/// `MAJOR.MINOR` or `MAJOR.MINOR.PATCH`, each a decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Version {
    major: u64,
    minor: u64,
    patch: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid version: expected MAJOR.MINOR or MAJOR.MINOR.PATCH")]
pub struct InvalidVersion;

impl FromStr for Version {
    type Err = InvalidVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let number = |part: &str| {
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(InvalidVersion);
            }
            part.parse::<u64>().map_err(|_| InvalidVersion)
        };
        let parts: Vec<&str> = s.split('.').collect();
        match parts[..] {
            [major, minor] => Ok(Version {
                major: number(major)?,
                minor: number(minor)?,
                patch: None,
            }),
            [major, minor, patch] => Ok(Version {
                major: number(major)?,
                minor: number(minor)?,
                patch: Some(number(patch)?),
            }),
            _ => Err(InvalidVersion),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse()
            .map_err(|_| serde::de::Error::custom("expected MAJOR.MINOR or MAJOR.MINOR.PATCH"))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(patch) = self.patch {
            write!(f, ".{patch}")?;
        }
        Ok(())
    }
}

impl Ord for Version {
    /// Numeric, with a missing patch counting as 0; `1.2` sorts just before `1.2.0` so the order is total.
    fn cmp(&self, other: &Self) -> Ordering {
        let key = |v: &Version| (v.major, v.minor, v.patch.unwrap_or(0), v.patch.is_some());
        key(self).cmp(&key(other))
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Version {
        s.parse().unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(v("1.10") > v("1.9"));
        assert!(v("2.0") > v("1.99.99"));
        assert!(v("1.2.10") > v("1.2.9"));
        assert!(v("1.2.1") > v("1.2"));
        assert!(v("1.2.0") > v("1.2"));
        let mut all = [v("1.10"), v("1.9"), v("1.2.3"), v("10.0")];
        all.sort();
        assert_eq!(all.map(|v| v.to_string()), ["1.2.3", "1.9", "1.10", "10.0"]);
    }

    #[test]
    fn malformed_versions_are_refused() {
        for bad in [
            "",
            "1",
            "1.",
            ".1",
            "1.2.3.4",
            "a.b",
            "1.-2",
            "1.2 ",
            "+1.2",
            "99999999999999999999.0",
        ] {
            assert_eq!(bad.parse::<Version>(), Err(InvalidVersion), "{bad:?}");
        }
        assert_eq!(v("01.002").to_string(), "1.2");
    }
}

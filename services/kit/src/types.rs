//! Value types from the contract, parsed once at the edge and trusted inside.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A MAC address: six two-digit hex groups joined by `:`, accepted in any case, kept lowercase.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddress(String);

impl MacAddress {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid MAC address: expected six two-digit hex groups joined by ':', like 0a:1b:2c:3d:4e:5f"
)]
pub struct InvalidMacAddress;

impl FromStr for MacAddress {
    type Err = InvalidMacAddress;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let groups: Vec<&str> = s.split(':').collect();
        let well_formed = groups.len() == 6
            && groups
                .iter()
                .all(|group| group.len() == 2 && group.bytes().all(|b| b.is_ascii_hexdigit()));
        if well_formed {
            Ok(MacAddress(s.to_ascii_lowercase()))
        } else {
            Err(InvalidMacAddress)
        }
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An instant, read from ISO 8601 with `Z` or an offset and written as `YYYY-MM-DDTHH:MM:SSZ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Datetime(DateTime<Utc>);

impl Datetime {
    pub fn now() -> Datetime {
        Datetime(Utc::now())
    }

    pub fn from_utc(instant: DateTime<Utc>) -> Datetime {
        Datetime(instant)
    }

    pub fn as_utc(&self) -> DateTime<Utc> {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid datetime: expected ISO 8601 with Z or an offset, like 2026-11-28T09:30:00Z")]
pub struct InvalidDatetime;

impl FromStr for Datetime {
    type Err = InvalidDatetime;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DateTime::parse_from_rfc3339(s)
            .or_else(|_| DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z"))
            .map(|instant| Datetime(instant.with_timezone(&Utc)))
            .map_err(|_| InvalidDatetime)
    }
}

impl fmt::Display for Datetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_rfc3339_opts(SecondsFormat::Secs, true))
    }
}

/// A short text field of the contract (a model name, a settings key, an alert category): 1 to 256
/// characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Label(String);

impl Label {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected 1 to 256 characters, got {0}")]
pub struct InvalidLabel(usize);

impl FromStr for Label {
    type Err = InvalidLabel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.chars().count() {
            1..=256 => Ok(Label(s.to_owned())),
            n => Err(InvalidLabel(n)),
        }
    }
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serde through `FromStr` and `Display`, so a bad value fails deserialisation with the type's own message.
macro_rules! serde_via_str {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    )*};
}
serde_via_str!(MacAddress, Datetime, Label);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_one_to_256_characters() {
        assert_eq!("v2".parse::<Label>().unwrap().as_str(), "v2");
        assert_eq!(
            "é".repeat(256)
                .parse::<Label>()
                .unwrap()
                .as_str()
                .chars()
                .count(),
            256
        );
        assert_eq!(
            "".parse::<Label>().unwrap_err().to_string(),
            "expected 1 to 256 characters, got 0"
        );
        assert_eq!(
            "x".repeat(257).parse::<Label>().unwrap_err().to_string(),
            "expected 1 to 256 characters, got 257"
        );
    }

    #[test]
    fn mac_addresses_are_lowercased_and_checked() {
        let mac: MacAddress = "0A:1b:2C:3d:4E:5f".parse().unwrap();
        assert_eq!(mac.as_str(), "0a:1b:2c:3d:4e:5f");
        for bad in [
            "",
            "0a:1b:2c:3d:4e",
            "0a:1b:2c:3d:4e:5f:60",
            "0a-1b-2c-3d-4e-5f",
            "0a:1b:2c:3d:4e:5g",
            "a:1b:2c:3d:4e:5f0",
        ] {
            assert_eq!(bad.parse::<MacAddress>(), Err(InvalidMacAddress), "{bad}");
        }
    }

    #[test]
    fn datetimes_accept_offsets_and_print_utc_seconds() {
        let cases = [
            ("2026-11-28T09:30:00Z", "2026-11-28T09:30:00Z"),
            ("2026-11-28T10:30:00+01:00", "2026-11-28T09:30:00Z"),
            ("2026-11-28T10:30:00.250+0100", "2026-11-28T09:30:00Z"),
        ];
        for (input, output) in cases {
            assert_eq!(
                input.parse::<Datetime>().unwrap().to_string(),
                output,
                "{input}"
            );
        }
        for bad in ["2026-11-28", "2026-11-28T09:30:00", "yesterday"] {
            assert_eq!(bad.parse::<Datetime>(), Err(InvalidDatetime), "{bad}");
        }
    }

    #[test]
    fn json_rejects_a_bad_mac_with_the_reason() {
        let error = serde_json::from_str::<MacAddress>("\"nope\"").unwrap_err();
        assert!(
            error.to_string().starts_with("invalid MAC address"),
            "{error}"
        );
    }
}

//! What an environment chooses for its releases: the cargo profile its functions are built with,
//! and how CodeDeploy moves traffic to a new version.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

/// A cargo profile functions are built with; the workspace's Cargo.toml defines both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Optimised for size across crates (fat LTO, one codegen unit): what qa and production run.
    Release,
    /// Compiled quickly and linked incrementally, for dev: larger and slower, never for production
    /// unless someone asks.
    Fast,
}

impl Profile {
    /// The name cargo knows it by, which is also its directory under `target/<triple>/`.
    pub fn as_str(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Fast => "fast",
        }
    }
}

impl FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Profile, String> {
        match s {
            "release" => Ok(Profile::Release),
            "fast" => Ok(Profile::Fast),
            _ => Err(format!(
                "unknown profile `{s}`: the profiles are release (qa and production) and fast (dev)"
            )),
        }
    }
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How traffic moves to a new version (`traffic` in the table, `--traffic` on the command line).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Traffic {
    /// All of it at once, once the gate passed the version.
    AllAtOnce,
    /// 10% more every minute, over ten minutes.
    Linear,
    /// 10% for five minutes, then the rest.
    Canary,
}

impl Traffic {
    pub const ALL: [Traffic; 3] = [Traffic::AllAtOnce, Traffic::Linear, Traffic::Canary];

    /// The name the table and `--traffic` take.
    pub fn as_str(self) -> &'static str {
        match self {
            Traffic::AllAtOnce => "all-at-once",
            Traffic::Linear => "linear",
            Traffic::Canary => "canary",
        }
    }

    /// The CodeDeploy deployment configuration, the stack's `DeploymentConfiguration`.
    pub fn configuration(self) -> &'static str {
        match self {
            Traffic::AllAtOnce => "CodeDeployDefault.LambdaAllAtOnce",
            Traffic::Linear => "CodeDeployDefault.LambdaLinear10PercentEvery1Minute",
            Traffic::Canary => "CodeDeployDefault.LambdaCanary10Percent5Minutes",
        }
    }

    /// The share of traffic the new version should have `elapsed` seconds after the shift began,
    /// and when (seconds after the start) the next step comes; `None` once it has all of it.
    pub fn step(self, elapsed: u64) -> (u8, Option<u64>) {
        match self {
            Traffic::AllAtOnce => (100, None),
            Traffic::Canary if elapsed < 300 => (10, Some(300)),
            Traffic::Canary => (100, None),
            Traffic::Linear => {
                let steps = elapsed / 60 + 1;
                if steps >= 10 {
                    (100, None)
                } else {
                    ((steps * 10) as u8, Some(steps * 60))
                }
            }
        }
    }
}

impl FromStr for Traffic {
    type Err = String;

    fn from_str(s: &str) -> Result<Traffic, String> {
        Traffic::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Traffic::ALL.iter().map(|t| t.as_str()).collect();
                format!(
                    "unknown traffic policy `{s}`: known ones are {}",
                    known.join(", ")
                )
            })
    }
}

impl<'de> Deserialize<'de> for Traffic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Traffic, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Traffic::AllAtOnce => "all at once",
            Traffic::Linear => "linear, 10% a minute",
            Traffic::Canary => "canary, 10% for 5 minutes",
        })
    }
}

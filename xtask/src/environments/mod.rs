//! Environments as the workspace declares them: `[workspace.metadata.environments]` in the root
//! Cargo.toml, one entry per name (`qa`) or pattern (`pr-*`, a prefix and a `*`), each saying what
//! the release tool decides per environment: the build profile, how traffic moves, whether it is
//! protected, whether its stores outlive its stacks, how long a throwaway one lives, whose secrets
//! it borrows, and (optionally) its account, region and domain. Adding an environment is an edit
//! of that table alone. A workspace that declares none gets [`Environments::builtin`]: dev, qa and
//! production as they always were.
//!
//! An [`Environment`] is a name the table accepts, with the entry that accepted it; it is parsed
//! once at the edge (`FromStr`, against the table the workspace installed) and cheap to copy.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, RwLock};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

mod choices;
mod derived;

pub use choices::{Profile, Traffic};
pub use derived::StackName;

/// Whether an environment's tables, buckets and pools outlive its stacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stores {
    /// Kept when the stack is deleted, with their data (the templates' `RetainExceptOnCreate`).
    #[default]
    Retained,
    /// Deleted with the stack, so that the environment can be destroyed and made again.
    Deleted,
}

/// One entry of the table, as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Declared {
    /// The cargo profile its functions are built with.
    pub profile: Profile,
    /// How traffic moves to a new version, unless `--traffic` says otherwise.
    pub traffic: Traffic,
    /// Destroyed only with `--confirm <name>`, and released only by its own pipeline.
    #[serde(default)]
    pub protected: bool,
    #[serde(default)]
    pub stores: Stores,
    /// How long a throwaway environment lives (`12h`, `7d`): its stacks are tagged with when they
    /// expire, and `destroy --expired` removes them after.
    #[serde(default)]
    pub time_to_live: Option<String>,
    /// The declared environment whose releases `promote` brings here.
    #[serde(default)]
    pub promotes_from: Option<String>,
    /// The declared environment whose secrets a stack here uses unless it is given its own.
    #[serde(default)]
    pub secrets_from: Option<String>,
    /// The AWS account it lives in (12 digits), when not the caller's.
    #[serde(default)]
    pub account: Option<String>,
    /// The profile of the standard AWS configuration (`~/.aws/config`: keys, SSO, an assumed
    /// role) whose credentials reach that account; without it, the usual chain (AWS_PROFILE, ...).
    #[serde(default)]
    pub aws_profile: Option<String>,
    /// The region it lives in, when not the command's.
    #[serde(default)]
    pub region: Option<String>,
    /// Its custom domain: `<service>.<name>.<domain>` and `apis.<name>.<domain>`.
    #[serde(default)]
    pub domain: Option<String>,
}

/// The table: each entry by its name or pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environments {
    entries: BTreeMap<String, Declared>,
}

/// The longest environment name the tool takes: the names made of it are then checked per service
/// and region before each deploy (`release::deployer`'s `check_names_fit`), since a bucket's 63
/// characters may allow fewer.
pub const LONGEST_NAME: usize = 30;

impl Environments {
    /// dev, qa and production as the tool knew them before environments were data.
    pub fn builtin() -> Environments {
        let entry = |profile, traffic, protected, promotes_from: Option<&str>| Declared {
            profile,
            traffic,
            protected,
            stores: Stores::Retained,
            time_to_live: None,
            promotes_from: promotes_from.map(str::to_owned),
            secrets_from: None,
            account: None,
            aws_profile: None,
            region: None,
            domain: None,
        };
        Environments {
            entries: BTreeMap::from([
                (
                    "dev".to_owned(),
                    entry(Profile::Fast, Traffic::AllAtOnce, false, None),
                ),
                (
                    "qa".to_owned(),
                    entry(Profile::Release, Traffic::Linear, false, None),
                ),
                (
                    "production".to_owned(),
                    entry(Profile::Release, Traffic::Canary, true, Some("qa")),
                ),
            ]),
        }
    }

    /// The table `[workspace.metadata.environments]` holds (`value`), checked whole: every name
    /// and pattern, every reference to another entry, every duration, account and region.
    pub fn from_metadata(value: &serde_json::Value) -> anyhow::Result<Environments> {
        let entries: BTreeMap<String, Declared> = serde_json::from_value(value.clone())
            .context("[workspace.metadata.environments] in Cargo.toml is malformed")?;
        let table = Environments { entries };
        table.check()?;
        Ok(table)
    }

    fn check(&self) -> anyhow::Result<()> {
        let at = "[workspace.metadata.environments] in Cargo.toml";
        if self.entries.is_empty() {
            bail!("{at} declares no environment");
        }
        for (key, declared) in &self.entries {
            // A pattern's prefix is checked as the shortest name it matches.
            let name = match key.strip_suffix('*') {
                Some(prefix) => format!("{prefix}a"),
                None => key.clone(),
            };
            check_name(&name).map_err(|why| anyhow::anyhow!("{at}: the entry `{key}`: {why}"))?;
            for (field, other) in [
                ("promotes-from", &declared.promotes_from),
                ("secrets-from", &declared.secrets_from),
            ] {
                if let Some(other) = other
                    && !self.entries.contains_key(other.as_str())
                {
                    bail!(
                        "{at}: `{key}` has {field} = \"{other}\", which the table does not declare \
                         by name"
                    );
                }
            }
            if let Some(ttl) = &declared.time_to_live
                && crate::names::duration(ttl).is_none_or(|d| d.is_zero())
            {
                bail!(
                    "{at}: `{key}`'s time-to-live `{ttl}` is not a duration: a whole number of \
                     seconds, minutes, hours or days, like 30m, 12h or 7d"
                );
            }
            if let Some(account) = &declared.account
                && !(account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit()))
            {
                bail!("{at}: `{key}`'s account `{account}` is not an AWS account id (12 digits)");
            }
            if let Some(region) = &declared.region {
                crate::names::check_region(region)
                    .map_err(|why| anyhow::anyhow!("{at}: `{key}`: {why}"))?;
            }
        }
        Ok(())
    }

    /// The entry that declares `name`: its own, else the pattern with the longest prefix.
    fn entry(&self, name: &str) -> Option<(&str, &Declared)> {
        if let Some((key, declared)) = self.entries.get_key_value(name) {
            return Some((key, declared));
        }
        self.entries
            .iter()
            .filter_map(|(key, declared)| {
                let prefix = key.strip_suffix('*')?;
                (name.len() > prefix.len() && name.starts_with(prefix))
                    .then_some((key.as_str(), declared))
            })
            .max_by_key(|(key, _)| key.len())
    }

    /// Every entry, by name or pattern, as `unknown environment` lists them.
    fn listed(&self) -> String {
        self.entries.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    /// `name` as this table declares it, or why it is not an environment.
    pub fn resolve(&self, name: &str) -> anyhow::Result<Environment> {
        let Some((key, declared)) = self.entry(name) else {
            bail!(
                "unknown environment `{name}`: known environments are {} (declare another in \
                 [workspace.metadata.environments] in Cargo.toml)",
                self.listed()
            );
        };
        check_name(name).map_err(|why| anyhow::anyhow!("environment `{name}`: {why}"))?;
        Ok(Environment::intern(name, key, declared))
    }

    /// The table every parse of an environment goes through from now on: the workspace's.
    pub fn install(self) {
        *TABLE.write().expect("the table's lock") = Some(self);
    }

    /// What the installed table declares under `key` exactly: a name, or a pattern (`pr-*`), as
    /// `bootstrap` gives a whole pattern's environments one pipeline.
    pub fn declared(key: &str) -> anyhow::Result<Declared> {
        Environments::with(|table| {
            table.entries.get(key).cloned().with_context(|| {
                format!(
                    "[workspace.metadata.environments] in Cargo.toml has no entry `{key}`; its \
                     entries are {}",
                    table.listed()
                )
            })
        })
    }

    /// Runs `with` on the installed table, or the built-in one when none is.
    fn with<T>(with: impl FnOnce(&Environments) -> T) -> T {
        let installed = TABLE.read().expect("the table's lock");
        match installed.as_ref() {
            Some(table) => with(table),
            None => with(&Environments::builtin()),
        }
    }
}

static TABLE: RwLock<Option<Environments>> = RwLock::new(None);

/// Why `name` cannot name an environment: lowercase letters, digits and hyphens, a letter first,
/// at most [`LONGEST_NAME`] characters (it becomes part of stack, function, bucket, log group
/// and domain names).
pub fn check_name(name: &str) -> Result<(), String> {
    let shaped = name.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.ends_with('-')
        && !name.contains("--");
    if !shaped {
        return Err(format!(
            "`{name}` is not a name an environment can have: lowercase letters, digits and single \
             hyphens, a letter first"
        ));
    }
    if name.len() > LONGEST_NAME {
        return Err(format!(
            "`{name}` is {} characters; an environment's name is at most {LONGEST_NAME}, since \
             stack, function, bucket and domain names are made of it",
            name.len()
        ));
    }
    Ok(())
}

/// An environment's name as a flag gives it, read before the workspace's table is: its shape
/// checked at once, looked up in the table by [`Name::resolve`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn resolve(&self) -> anyhow::Result<Environment> {
        self.0.parse()
    }
}

impl FromStr for Name {
    type Err = String;

    fn from_str(s: &str) -> Result<Name, String> {
        check_name(s).map(|()| Name(s.to_owned()))
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A name the workspace's table accepts, with the entry that accepted it.
#[derive(Clone, Copy)]
pub struct Environment(&'static Named);

#[derive(Debug, PartialEq, Eq)]
struct Named {
    name: String,
    /// The name or pattern of the entry that declares it.
    declared_as: String,
    declared: Declared,
}

/// Every environment parsed so far: each is made once and lives as long as the command.
static INTERNED: Mutex<Vec<&'static Named>> = Mutex::new(Vec::new());

impl Environment {
    fn intern(name: &str, declared_as: &str, declared: &Declared) -> Environment {
        let named = Named {
            name: name.to_owned(),
            declared_as: declared_as.to_owned(),
            declared: declared.clone(),
        };
        let mut interned = INTERNED.lock().expect("the interned environments' lock");
        if let Some(found) = interned.iter().find(|n| ***n == named) {
            return Environment(found);
        }
        let leaked: &'static Named = Box::leak(Box::new(named));
        interned.push(leaked);
        Environment(leaked)
    }

    pub fn as_str(self) -> &'static str {
        &self.0.name
    }

    /// What the table declares for it.
    pub fn declared(self) -> &'static Declared {
        &self.0.declared
    }

    /// Its custom domain, when the table gives it one.
    pub fn domain(self) -> Option<&'static str> {
        self.0.declared.domain.as_deref()
    }

    /// The cargo profile its functions are built with when nobody asks for another.
    pub fn profile(self) -> Profile {
        self.0.declared.profile
    }

    /// How traffic moves to a new version unless `--traffic` says otherwise.
    pub fn traffic(self) -> Traffic {
        self.0.declared.traffic
    }

    pub fn protected(self) -> bool {
        self.0.declared.protected
    }

    pub fn stores(self) -> Stores {
        self.0.declared.stores
    }

    /// How long it lives after each deploy, for a throwaway environment.
    pub fn time_to_live(self) -> Option<Duration> {
        crate::names::duration(self.0.declared.time_to_live.as_deref()?)
    }

    /// The environment whose releases `promote` brings here, as the table declares it.
    pub fn promotes_from(self) -> Option<Environment> {
        let from = self.0.declared.promotes_from.as_deref()?;
        from.parse().ok()
    }

    /// The environment whose secrets a stack here uses unless it is given its own.
    pub fn secrets_from(self) -> Option<Environment> {
        let from = self.0.declared.secrets_from.as_deref()?;
        from.parse().ok()
    }
}

impl PartialEq for Environment {
    fn eq(&self, other: &Environment) -> bool {
        self.0.name == other.0.name
    }
}

impl Eq for Environment {}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Environment({})", self.0.name)
    }
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.name)
    }
}

impl FromStr for Environment {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Environment> {
        Environments::with(|table| table.resolve(s))
    }
}

impl Serialize for Environment {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Environment {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Environment, D::Error> {
        String::deserialize(deserializer)?
            .parse()
            .map_err(|e: anyhow::Error| serde::de::Error::custom(format!("{e:#}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Environments {
        Environments::from_metadata(&serde_json::json!({
            "dev": {"profile": "fast", "traffic": "all-at-once"},
            "qa": {"profile": "release", "traffic": "linear"},
            "production": {"profile": "release", "traffic": "canary", "protected": true,
                           "promotes-from": "qa", "account": "210987654321"},
            "dev-*": {"profile": "fast", "traffic": "all-at-once", "stores": "deleted",
                      "secrets-from": "dev"},
            "pr-*": {"profile": "fast", "traffic": "all-at-once", "stores": "deleted",
                     "time-to-live": "7d", "secrets-from": "dev"},
        }))
        .unwrap()
    }

    #[test]
    fn names_and_patterns_resolve_to_their_entries() {
        let table = table();
        let pr = table.resolve("pr-42").unwrap();
        assert_eq!(pr.as_str(), "pr-42");
        assert_eq!(pr.0.declared_as, "pr-*");
        assert_eq!(pr.stores(), Stores::Deleted);
        assert_eq!(pr.time_to_live(), Some(Duration::from_secs(7 * 86_400)));
        let production = table.resolve("production").unwrap();
        assert!(production.protected());
        assert_eq!(production.traffic(), Traffic::Canary);
        assert_eq!(
            production.0.declared.account.as_deref(),
            Some("210987654321")
        );
        assert_eq!(table.resolve("dev").unwrap().0.declared_as, "dev");
        assert_eq!(table.resolve("dev-ana").unwrap().0.declared_as, "dev-*");
        // The same name is the same environment, and copies compare equal.
        assert_eq!(table.resolve("pr-42").unwrap(), pr);
        let error = table.resolve("staging").unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown environment `staging`: known environments are dev, dev-*, pr-*, production, \
             qa (declare another in [workspace.metadata.environments] in Cargo.toml)"
        );
        // A pattern alone is not a name.
        assert!(table.resolve("pr-").is_err());
        assert!(table.resolve("pr-Big").is_err());
        assert!(table.resolve(&format!("pr-{}", "9".repeat(40))).is_err());
    }

    #[test]
    fn a_malformed_table_is_refused_whole() {
        let refused =
            |value: serde_json::Value| Environments::from_metadata(&value).unwrap_err().to_string();
        let ok = serde_json::json!({"profile": "fast", "traffic": "linear"});
        assert!(
            refused(serde_json::json!({"Dev": ok})).contains("the entry `Dev`"),
            "names are lowercase"
        );
        assert!(
            refused(
                serde_json::json!({"prod": {"profile": "fast", "traffic": "linear",
                                                 "promotes-from": "qa"}})
            )
            .contains("promotes-from = \"qa\", which the table does not declare")
        );
        assert!(
            refused(
                serde_json::json!({"pr-*": {"profile": "fast", "traffic": "linear",
                                                 "time-to-live": "soon"}})
            )
            .contains("is not a duration")
        );
        let error = format!(
            "{:#}",
            Environments::from_metadata(&serde_json::json!({"qa": {"profile": "fast",
                                                                    "traffic": "fast"}}))
            .unwrap_err()
        );
        assert!(error.contains("unknown traffic policy `fast`"), "{error}");
        assert!(
            format!(
                "{:#}",
                Environments::from_metadata(&serde_json::json!({"qa": {"profile": "fast",
                    "traffic": "linear", "colour": "red"}}))
                .unwrap_err()
            )
            .contains("unknown field `colour`")
        );
    }
}

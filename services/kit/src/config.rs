//! Typed configuration from environment variables, read once at start-up.
//!
//! Only a binary's `main.rs` touches the process environment: it captures it into an [`Env`]
//! and hands that to each config's `from_env`, which is how tests build configs too.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

/// A snapshot of environment variables.
#[derive(Debug, Clone, Default)]
pub struct Env(HashMap<String, String>);

/// A variable that is missing or malformed; start-up stops with this message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {name}: {hint}")]
    Missing { name: String, hint: String },
    #[error("malformed environment variable {name}: {problem}")]
    Malformed { name: String, problem: String },
}

impl Env {
    /// The process environment; call this from `main.rs` only.
    pub fn from_process() -> Env {
        Env(std::env::vars().collect())
    }

    /// A variable that must be present and not empty; `hint` says what it is for.
    pub fn required(&self, name: &str, hint: &str) -> Result<String, ConfigError> {
        self.optional(name).ok_or_else(|| ConfigError::Missing {
            name: name.to_owned(),
            hint: hint.to_owned(),
        })
    }

    /// A variable that may be absent; an empty value counts as absent.
    pub fn optional(&self, name: &str) -> Option<String> {
        self.0
            .get(name)
            .filter(|value| !value.trim().is_empty())
            .cloned()
    }

    /// A present variable parsed into `T`.
    pub fn required_parsed<T>(&self, name: &str, hint: &str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let value = self.required(name, hint)?;
        parse(name, &value)
    }

    /// An optional variable parsed into `T`.
    pub fn optional_parsed<T>(&self, name: &str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.optional(name)
            .map(|value| parse(name, &value))
            .transpose()
    }
}

fn parse<T>(name: &str, value: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    value
        .trim()
        .parse()
        .map_err(|error: T::Err| ConfigError::Malformed {
            name: name.to_owned(),
            problem: error.to_string(),
        })
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Env {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Env {
        Env(iter
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_variable_is_named_with_its_purpose() {
        let env = Env::from_iter([("EMPTY", " ")]);
        let error = env.required("EMPTY", "the table of firmware").unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing environment variable EMPTY: the table of firmware"
        );
    }

    #[test]
    fn a_malformed_variable_is_named_with_the_problem() {
        let env = Env::from_iter([("PORT", "eighty")]);
        let error = env.required_parsed::<u16>("PORT", "port").unwrap_err();
        assert_eq!(
            error.to_string(),
            "malformed environment variable PORT: invalid digit found in string"
        );
        assert_eq!(env.optional_parsed::<u16>("ABSENT"), Ok(None));
    }
}

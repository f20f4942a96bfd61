//! The names made of an environment's: a service's stack, and the functions it makes. Each is made
//! in one place; what must fit AWS's limits is checked before a deploy (`release::deployer`).

use std::fmt;

use serde::Serialize;

use super::Environment;

/// A service's stack in one environment, `<service>-<environment>`: the one place that name is
/// made. It reads as the `&str` it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StackName(String);

impl StackName {
    pub fn new(service: &str, environment: Environment) -> StackName {
        StackName(format!("{service}-{environment}"))
    }

    /// One of the stack's functions: `<service>-<environment>-<function>`.
    pub fn function(&self, function: &str) -> FunctionName {
        FunctionName(format!("{}-{function}", self.0))
    }
}

impl std::ops::Deref for StackName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StackName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Lambda function a service stack makes, `<service>-<environment>-<function>`; made only by
/// [`StackName::function`]. It reads as the `&str` it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FunctionName(String);

impl std::ops::Deref for FunctionName {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FunctionName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_and_function_names_are_made_in_one_way() {
        let stack = StackName::new("hardware", "dev".parse().unwrap());
        assert_eq!(&*stack, "hardware-dev");
        assert_eq!(
            stack.function("apigateway-execute").to_string(),
            "hardware-dev-apigateway-execute"
        );
    }
}

//! The one way the release tool reads a CloudFormation template. YAML short-form tags read as
//! their values, so `!Ref FirmwareTable` is the text `FirmwareTable` and `!GetAtt Role.Arn` is
//! `Role.Arn`: a value that is the name of one of the template's resources refers to it. That is
//! all any reader here needs: the deploy plan (parameters, capabilities), `serve`'s stores and the
//! tidy checks.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use aws_sdk_cloudformation::types::Capability;
use yaml_rust2::{Yaml, YamlLoader};

/// A template, parsed once and checked to be one (it has `Resources`).
#[derive(Debug, Clone)]
pub struct Template {
    /// What messages call it: its file name, or where it came from.
    pub name: String,
    /// The text, as CloudFormation receives it.
    pub body: String,
    yaml: Yaml,
}

/// The properties that give an IAM resource a fixed name, which needs CAPABILITY_NAMED_IAM.
const IAM_NAMES: [&str; 5] = [
    "RoleName",
    "UserName",
    "GroupName",
    "ManagedPolicyName",
    "InstanceProfileName",
];

impl Template {
    pub fn parse(name: &str, body: String) -> anyhow::Result<Template> {
        let mut documents = YamlLoader::load_from_str(&body)
            .with_context(|| format!("{name} is not valid YAML"))?;
        anyhow::ensure!(!documents.is_empty(), "{name} is empty");
        let yaml = documents.swap_remove(0);
        anyhow::ensure!(
            yaml["Resources"].as_hash().is_some(),
            "{name} is not a CloudFormation template: it has no Resources"
        );
        Ok(Template {
            name: name.to_owned(),
            body,
            yaml,
        })
    }

    pub fn read(path: &Path) -> anyhow::Result<Template> {
        let body =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Template::parse(&path.display().to_string(), body)
    }

    /// Each declared parameter, and whether it has a default.
    pub fn parameters(&self) -> BTreeMap<String, bool> {
        self.yaml["Parameters"]
            .as_hash()
            .into_iter()
            .flatten()
            .filter_map(|(key, value)| {
                Some((key.as_str()?.to_owned(), !value["Default"].is_badvalue()))
            })
            .collect()
    }

    /// A parameter's default, as CloudFormation reads it (text, whatever its YAML type).
    pub fn default_value(&self, parameter: &str) -> Option<String> {
        match &self.yaml["Parameters"][parameter]["Default"] {
            Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
            Yaml::Integer(number) => Some(number.to_string()),
            Yaml::Boolean(flag) => Some(flag.to_string()),
            _ => None,
        }
    }

    /// Why CloudFormation would refuse `value` for `parameter` by the constraints the template
    /// declares for it (`Type: Number`, `MinValue`, `MaxValue`, `MinLength`, `MaxLength`,
    /// `AllowedPattern`, `AllowedValues`); `None` when it would take it.
    pub fn refuses(&self, parameter: &str, value: &str) -> Option<String> {
        let declared = &self.yaml["Parameters"][parameter];
        let bound = |name: &str| -> Option<f64> {
            match &declared[name] {
                Yaml::Integer(n) => Some(*n as f64),
                Yaml::Real(text) | Yaml::String(text) => text.parse().ok(),
                _ => None,
            }
        };
        if declared["Type"].as_str() == Some("Number") {
            let Ok(number) = value.trim().parse::<f64>() else {
                return Some(format!("{parameter} is a number, and `{value}` is not one"));
            };
            if let Some(min) = bound("MinValue").filter(|min| number < *min) {
                return Some(format!(
                    "{parameter} is at least {min}, and {value} is less"
                ));
            }
            if let Some(max) = bound("MaxValue").filter(|max| number > *max) {
                return Some(format!("{parameter} is at most {max}, and {value} is more"));
            }
        }
        let length = value.chars().count() as f64;
        if let Some(min) = bound("MinLength").filter(|min| length < *min) {
            return Some(format!("{parameter} is at least {min} characters long"));
        }
        if let Some(max) = bound("MaxLength").filter(|max| length > *max) {
            return Some(format!("{parameter} is at most {max} characters long"));
        }
        if let Some(pattern) = declared["AllowedPattern"].as_str() {
            // CloudFormation matches the whole value (Java's regular expressions; the patterns
            // the templates use are in the syntax both share).
            let whole = regex_lite::Regex::new(&format!("^(?:{pattern})$"));
            if whole.is_ok_and(|whole| !whole.is_match(value)) {
                return Some(format!(
                    "{parameter} must match {pattern}, and `{value}` does not"
                ));
            }
        }
        let allowed: Vec<String> = declared["AllowedValues"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(|v| match v {
                Yaml::String(text) | Yaml::Real(text) => Some(text.clone()),
                Yaml::Integer(number) => Some(number.to_string()),
                _ => None,
            })
            .collect();
        if !allowed.is_empty() && !allowed.iter().any(|a| a == value) {
            return Some(format!(
                "{parameter} is one of {}, and `{value}` is not",
                allowed.join(", ")
            ));
        }
        None
    }

    /// The resources of one type (`AWS::DynamoDB::Table`), with their logical ids, in template order.
    pub fn resources(&self, kind: &str) -> Vec<(&str, &Yaml)> {
        self.all_resources()
            .filter(|(_, resource)| resource["Type"].as_str() == Some(kind))
            .collect()
    }

    /// The type of every resource, in template order (for the tidy proofs).
    #[cfg(test)]
    pub fn resource_types(&self) -> Vec<&str> {
        self.all_resources()
            .filter_map(|(_, resource)| resource["Type"].as_str())
            .collect()
    }

    /// The resources CloudFormation keeps when the stack is deleted (`DeletionPolicy: Retain` or
    /// `RetainExceptOnCreate`), with their types, in template order.
    pub fn retained(&self) -> Vec<(&str, &str)> {
        self.all_resources()
            .filter(|(_, resource)| {
                matches!(
                    resource["DeletionPolicy"].as_str(),
                    Some("Retain" | "RetainExceptOnCreate")
                )
            })
            .map(|(id, resource)| (id, resource["Type"].as_str().unwrap_or_default()))
            .collect()
    }

    /// The tables and buckets whose names the template fixes, with `${Name}` filled in from
    /// `values` (a stack's parameters and pseudo parameters), in template order. A name with a
    /// placeholder `values` lacks is left out.
    pub fn store_names(&self, values: &BTreeMap<&str, &str>) -> Vec<(&str, &str, String)> {
        self.all_resources()
            .filter_map(|(id, resource)| {
                let kind = resource["Type"].as_str()?;
                let property = match kind {
                    "AWS::DynamoDB::Table" => "TableName",
                    "AWS::S3::Bucket" => "BucketName",
                    _ => return None,
                };
                let mut name = resource["Properties"][property].as_str()?.to_owned();
                for (key, value) in values {
                    name = name.replace(&format!("${{{key}}}"), value);
                }
                (!name.contains("${")).then_some((id, kind, name))
            })
            .collect()
    }

    /// [`Template::store_names`] of the stores the stack keeps when it is deleted: what an
    /// earlier stack of the same name left, which a new one cannot create again while it exists.
    pub fn retained_names(&self, values: &BTreeMap<&str, &str>) -> Vec<(&str, &str, String)> {
        let retained: Vec<&str> = self.retained().into_iter().map(|(id, _)| id).collect();
        self.store_names(values)
            .into_iter()
            .filter(|(id, _, _)| retained.contains(id))
            .collect()
    }

    /// True when `text` is the logical id of one of the template's resources: a `!Ref` to it.
    pub fn is_resource(&self, text: &str) -> bool {
        self.all_resources().any(|(id, _)| id == text)
    }

    fn all_resources(&self) -> impl Iterator<Item = (&str, &Yaml)> {
        self.yaml["Resources"]
            .as_hash()
            .into_iter()
            .flatten()
            .filter_map(|(id, resource)| Some((id.as_str()?, resource)))
    }

    /// Exactly the capabilities a change set of this template needs, counting the templates its
    /// nested stacks use: IAM when they create IAM resources, NAMED_IAM when one of those has a
    /// fixed name, AUTO_EXPAND when a template uses a transform (macro).
    pub fn capabilities(&self, nested: &[Template]) -> Vec<Capability> {
        let (mut iam, mut named, mut expand) = (false, false, false);
        for template in std::iter::once(self).chain(nested) {
            expand |= !template.yaml["Transform"].is_badvalue();
            for (_, resource) in template.all_resources() {
                if resource["Type"]
                    .as_str()
                    .is_some_and(|kind| kind.starts_with("AWS::IAM::"))
                {
                    iam = true;
                    named |= IAM_NAMES
                        .iter()
                        .any(|name| !resource["Properties"][*name].is_badvalue());
                }
            }
        }
        let mut needed = Vec::new();
        if named {
            needed.push(Capability::CapabilityNamedIam);
        } else if iam {
            needed.push(Capability::CapabilityIam);
        }
        if expand {
            needed.push(Capability::CapabilityAutoExpand);
        }
        needed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_against_every_constraint_the_template_declares() {
        let template = parse(
            "Parameters:\n  Rate:\n    Type: Number\n    MinValue: 1\n    MaxValue: 10000\n  \
             Arn:\n    Type: String\n    AllowedPattern: \"^$|^arn:aws:secretsmanager:.+$\"\n  \
             Name:\n    Type: String\n    MinLength: 2\n    MaxLength: 4\n  \
             Kind:\n    Type: String\n    AllowedValues: [a, b]\nResources: {}\n",
        );
        let refused = |p: &str, v: &str| template.refuses(p, v);
        assert_eq!(
            refused("Rate", "0").as_deref(),
            Some("Rate is at least 1, and 0 is less")
        );
        assert_eq!(
            refused("Rate", "10001").as_deref(),
            Some("Rate is at most 10000, and 10001 is more")
        );
        assert_eq!(
            refused("Rate", "fast").as_deref(),
            Some("Rate is a number, and `fast` is not one")
        );
        assert_eq!(refused("Rate", "100"), None);
        assert!(
            refused("Arn", "nope")
                .unwrap()
                .starts_with("Arn must match")
        );
        assert_eq!(refused("Arn", ""), None);
        assert_eq!(refused("Arn", "arn:aws:secretsmanager:x"), None);
        assert_eq!(
            refused("Name", "a").as_deref(),
            Some("Name is at least 2 characters long")
        );
        assert_eq!(
            refused("Name", "abcde").as_deref(),
            Some("Name is at most 4 characters long")
        );
        assert_eq!(
            refused("Kind", "c").as_deref(),
            Some("Kind is one of a, b, and `c` is not")
        );
    }

    fn parse(text: &str) -> Template {
        Template::parse("t", text.to_owned()).unwrap()
    }

    #[test]
    fn retained_stores_are_named_as_the_stack_would_name_them() {
        let template = parse(
            r#"Resources:
  Kept:
    Type: AWS::DynamoDB::Table
    DeletionPolicy: RetainExceptOnCreate
    Properties:
      TableName: !Sub "hardware-${Environment}-sync"
  Gone:
    Type: AWS::DynamoDB::Table
    Properties:
      TableName: x
  Files:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
    Properties:
      BucketName: !Sub "b-${Environment}-${AWS::Region}"
  Unknown:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
    Properties:
      BucketName: !Sub "b-${Other}"
  Generated:
    Type: AWS::S3::Bucket
    DeletionPolicy: Retain
"#,
        );
        let values = BTreeMap::from([("Environment", "pr-7"), ("AWS::Region", "eu-west-1")]);
        assert_eq!(
            template.store_names(&values)[1],
            ("Gone", "AWS::DynamoDB::Table", "x".to_owned())
        );
        assert_eq!(
            template.retained_names(&values),
            [
                (
                    "Kept",
                    "AWS::DynamoDB::Table",
                    "hardware-pr-7-sync".to_owned()
                ),
                ("Files", "AWS::S3::Bucket", "b-pr-7-eu-west-1".to_owned()),
            ]
        );
    }

    #[test]
    fn templates_ask_for_exactly_the_capabilities_they_need() {
        let role = "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties: {}\n";
        assert_eq!(parse(role).capabilities(&[]), [Capability::CapabilityIam]);
        let none = parse("Resources:\n  Topic:\n    Type: AWS::SNS::Topic\n");
        assert!(none.capabilities(&[]).is_empty());
        // An IAM resource in a nested template counts for the parent's change set.
        let named = parse(
            "Resources:\n  R:\n    Type: AWS::IAM::Role\n    Properties:\n      RoleName: fixed\n",
        );
        assert_eq!(
            none.capabilities(&[named]),
            [Capability::CapabilityNamedIam]
        );
        let macro_ = parse("Transform: AWS::Serverless-2016-10-31\nResources: {}\n");
        assert_eq!(macro_.capabilities(&[]), [Capability::CapabilityAutoExpand]);
    }

    #[test]
    fn malformed_templates_are_named() {
        let error = Template::parse("bad.yaml", "a: [".to_owned()).unwrap_err();
        assert!(format!("{error:#}").starts_with("bad.yaml is not valid YAML"));
        let error = Template::parse("list.yaml", "- 1".to_owned()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "list.yaml is not a CloudFormation template: it has no Resources"
        );
    }

    #[test]
    fn references_read_as_the_names_they_refer_to() {
        let template = parse(
            "Parameters:\n  Env: {Type: String}\n  Domain: {Type: String, Default: ''}\n\
             Resources:\n  Table:\n    Type: AWS::DynamoDB::Table\n  Function:\n    Type: AWS::Lambda::Function\n    \
             Properties:\n      Environment:\n        Variables:\n          TABLE: !Ref Table\n",
        );
        assert_eq!(
            template.parameters(),
            BTreeMap::from([("Domain".to_owned(), true), ("Env".to_owned(), false)])
        );
        let [(id, function)] = template.resources("AWS::Lambda::Function")[..] else {
            panic!("one function")
        };
        assert_eq!(id, "Function");
        let table = function["Properties"]["Environment"]["Variables"]["TABLE"]
            .as_str()
            .unwrap();
        assert!(template.is_resource(table));
        assert!(!template.is_resource("Env"));
    }
}

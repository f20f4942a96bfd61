//! Each service's template takes what the release tool passes it, and declares its functions as
//! the service's `[package.metadata.lambda]` does.

use super::{load, one_or_many, repo};
use crate::release::manifest::{
    artifact_key_parameter, artifact_version_parameter, code_sha256_parameter,
};
use crate::release::stack::decide::STACK_PARAMETERS;
use crate::workspace::service_template;

#[test]
fn service_templates_take_what_the_xtask_passes() {
    let workspace = crate::local::metadata::workspace(Some(&repo().join("Cargo.toml")))
        .expect("the workspace loads");
    assert!(!workspace.services.is_empty());
    for service in &workspace.services {
        let path = repo()
            .join("cloudformation")
            .join(service_template(&service.name));
        assert!(
            path.is_file(),
            "{} has no template at {}",
            service.name,
            path.display()
        );
        let template = load(&path);
        let declared = template.parameters();
        let mut passed: Vec<String> = STACK_PARAMETERS.iter().map(|p| p.to_string()).collect();
        for function in workspace.released_functions(service) {
            let parameter = artifact_key_parameter(&function.name);
            passed.push(artifact_version_parameter(&parameter));
            passed.push(parameter);
        }
        // Each of the service's own functions publishes versions, checked against its code's hash.
        for function in &service.functions {
            passed.push(code_sha256_parameter(&artifact_key_parameter(
                &function.name,
            )));
        }
        for name in &passed {
            assert!(
                declared.contains_key(name),
                "{}: no parameter {name}, which deploy passes",
                path.display()
            );
        }
        for (name, has_default) in &declared {
            assert!(
                passed.iter().any(|p| p == name) || *has_default,
                "{}: parameter {name} is neither passed by deploy nor defaulted",
                path.display()
            );
        }

        let functions = template.resources("AWS::Lambda::Function");
        assert_eq!(
            functions.len(),
            service.functions.len(),
            "{}: one Lambda function per declared function",
            path.display()
        );
        for function in &service.functions {
            let parameter = artifact_key_parameter(&function.name);
            let (name, resource) = functions
                .iter()
                .find(|(_, r)| {
                    r["Properties"]["Code"]["S3Key"].as_str() == Some(parameter.as_str())
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no function takes its code from {parameter}",
                        path.display()
                    )
                });
            let properties = &resource["Properties"];
            let context = format!("{}: {name}", path.display());
            assert_eq!(
                properties["Code"]["S3Bucket"].as_str(),
                Some("ArtifactBucket"),
                "{context}"
            );
            assert_eq!(
                properties["Runtime"].as_str(),
                Some("provided.al2023"),
                "{context}"
            );
            assert_eq!(
                properties["Handler"].as_str(),
                Some("bootstrap"),
                "{context}"
            );
            assert_eq!(
                one_or_many(&properties["Architectures"])
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>(),
                [Some(function.architecture.as_str())],
                "{context}: architecture differs from [package.metadata.lambda]"
            );
            assert_eq!(
                properties["FunctionName"].as_str(),
                Some(format!("{}-${{Environment}}-{}", service.name, function.name).as_str()),
                "{context}"
            );
            if let Some(memory) = function.memory {
                assert_eq!(
                    properties["MemorySize"].as_i64(),
                    Some(i64::from(memory)),
                    "{context}: memory"
                );
            }
            if let Some(timeout) = function.timeout {
                assert_eq!(
                    properties["Timeout"].as_i64(),
                    Some(i64::from(timeout)),
                    "{context}: timeout"
                );
            }
            assert_eq!(
                properties["Environment"]["Variables"]["AWS_LAMBDA_HTTP_IGNORE_STAGE_IN_PATH"]
                    .as_str(),
                Some("true"),
                "{context}"
            );
        }
        let nested = template.resources("AWS::CloudFormation::Stack");
        assert!(
            nested
                .iter()
                .any(|(_, r)| r["Properties"]["TemplateURL"].as_str()
                    == Some("ApiGatewayTemplateUrl")),
            "{}: the API Gateway stack's TemplateURL must be the ApiGatewayTemplateUrl parameter",
            path.display()
        );
    }
}

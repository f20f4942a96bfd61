//! The names a stack will make, checked before anything is built: each fits AWS's rules for its
//! kind (a function's 64 characters, a bucket's 63 DNS-safe ones), since an environment's name is
//! part of them all; and none is taken by what an earlier stack of the same name left: a stack
//! that is about to be created cannot make a table or bucket whose fixed name still exists, and
//! CloudFormation would find that out only halfway through the create, then roll everything back.

use anyhow::bail;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;

use super::Deployer;
use crate::release::report::Retained;
use crate::release::stack::Template;

impl Deployer<'_> {
    /// Refuses, naming it and the longest environment name that would fit, a name `service`'s
    /// stack would make in this environment and region that AWS does not allow.
    pub(super) fn check_names_fit(
        &self,
        service: &crate::workspace::Service,
        template: &Template,
    ) -> anyhow::Result<()> {
        let stack = self.stack_name(&service.name);
        let environment = self.environment.to_string();
        let mut names: Vec<(String, &str, usize)> = vec![(stack.to_string(), "stack", 128)];
        for function in self.workspace.released_functions(service) {
            names.push((stack.function(&function.name).to_string(), "function", 64));
        }
        let values = std::collections::BTreeMap::from([
            ("Environment", environment.as_str()),
            ("AWS::Region", self.region.as_str()),
        ]);
        for (_, kind, name) in template.store_names(&values) {
            let (kind, most) = match kind {
                "AWS::S3::Bucket" => ("bucket", 63),
                _ => ("table", 255),
            };
            names.push((name, kind, most));
        }
        for (name, kind, most) in names {
            if name.len() > most {
                let fits = most + environment.len() - name.len();
                bail!(
                    "environment `{environment}` makes the {kind} name {name} ({} characters) in \
                     {}, and AWS allows {most}: use an environment name of at most {fits} \
                     characters; nothing was built or changed",
                    name.len(),
                    self.region
                );
            }
        }
        Ok(())
    }

    /// Refuses to create `stack` from `template` while a store it names exists.
    pub(super) async fn refuse_taken_names(
        &self,
        stack: &str,
        template: &Template,
    ) -> anyhow::Result<()> {
        let environment = self.environment.to_string();
        let values = std::collections::BTreeMap::from([
            ("Environment", environment.as_str()),
            ("AWS::Region", self.region.as_str()),
        ]);
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let mut taken = Vec::new();
        for (logical_id, kind, name) in template.retained_names(&values) {
            let exists = match kind {
                "AWS::DynamoDB::Table" => {
                    match dynamodb.describe_table().table_name(&name).send().await {
                        Ok(_) => true,
                        Err(error) if error.code() == Some("ResourceNotFoundException") => false,
                        Err(error) => bail!(
                            "could not tell whether the table {name}, which {stack} would create, \
                             already exists: {}. The deployer needs dynamodb:DescribeTable on it \
                             (`cargo xtask bootstrap --environment {environment}` grants it)",
                            aws_sdk_dynamodb::error::DisplayErrorContext(&error)
                        ),
                    }
                }
                // Found, or refused (403): either way the name is taken, by this account or
                // another, and the create would fail on it.
                _ => match self.s3.head_bucket().bucket(&name).send().await {
                    Ok(_) => true,
                    Err(error) if error.as_service_error().is_some_and(|e| e.is_not_found()) => {
                        false
                    }
                    Err(error)
                        if error
                            .raw_response()
                            .is_some_and(|r| r.status().as_u16() == 403) =>
                    {
                        true
                    }
                    Err(error) => bail!(
                        "could not tell whether the bucket {name}, which {stack} would create, \
                         already exists: {}",
                        aws_sdk_s3::error::DisplayErrorContext(&error)
                    ),
                },
            };
            if exists {
                taken.push(Retained::new(logical_id, kind, &name, &self.region));
            }
        }
        if taken.is_empty() {
            return Ok(());
        }
        let mut message = format!(
            "{stack} does not exist, and creating it would fail: the template names stores that \
             already exist, kept by their DeletionPolicy when an earlier {stack} was destroyed. \
             Nothing was built or changed. Remove each (its data goes with it), then deploy \
             again:"
        );
        for store in &taken {
            message.push_str(&format!(
                "\n  {}  {}\n    {}",
                store.kind, store.physical_id, store.remove
            ));
        }
        bail!(message)
    }
}

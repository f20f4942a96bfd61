//! `destroy`'s half of the deployer: deleting a stack through its lock, after saying what
//! CloudFormation keeps.

use std::time::Instant;

use anyhow::Context as _;

use super::Deployer;
use crate::aws::cloudformation;
use crate::environments::Stores;
use crate::release::history;
use crate::release::report::{DestroyOutcome, Destroyed, Retained};
use crate::release::stack::Template;

impl Deployer<'_> {
    /// Deletes the service's stack under its lock, saying first what CloudFormation will keep;
    /// the stack's history stays in the bucket. A stack that does not exist is not an error.
    pub async fn destroy(&self, service: &str) -> anyhow::Result<Destroyed> {
        let stack = self.stack_name(service);
        let started = Instant::now();
        let history = format!("s3://{}/{}", self.bucket, history::key(&stack));
        let Some(current) = cloudformation::describe(&self.cloudformation, &stack).await? else {
            self.progress.note(&format!(
                "stack {stack} does not exist in {}: there is nothing to destroy",
                self.region
            ));
            return Ok(Destroyed {
                stack,
                outcome: DestroyOutcome::Absent,
                retained: Vec::new(),
                history,
                seconds: started.elapsed().as_secs_f64(),
            });
        };
        let template = Template::parse(
            &stack,
            cloudformation::template_body(&self.cloudformation, &current.id).await?,
        )?;
        let resources = cloudformation::resources(&self.cloudformation, &current.id).await?;
        let retained: Vec<Retained> = template
            .retained()
            .into_iter()
            .filter_map(|(logical_id, kind)| {
                let physical_id = &resources
                    .iter()
                    .find(|r| r.logical_id == logical_id)?
                    .physical_id;
                Some(Retained::new(logical_id, kind, physical_id, &self.region))
            })
            .collect();
        self.progress
            .text(&crate::release::report::retained_text(&stack, &retained));
        // An environment whose stores go with its stacks: S3 deletes only an empty bucket.
        if self.environment.stores() == Stores::Deleted {
            for bucket in resources.iter().filter(|r| r.kind == "AWS::S3::Bucket") {
                self.empty_bucket(&bucket.physical_id).await?;
            }
        }

        let deadline = started + self.options.timeout;
        let engine = self.engine();
        // As the role that made it, as its change sets ran: the pipeline's own rights delete
        // nothing (and its policy lets it delete a stack only so).
        let role = self.stack_role().await?;
        let work = async |_: &_| engine.destroy(&stack, Some(&role), deadline).await;
        let interrupted = async || {
            anyhow::anyhow!(
                "interrupted; if the deletion of stack {stack} had begun it goes on in AWS: follow \
                 it with `aws cloudformation describe-stack-events --stack-name {stack} --region {}`, \
                 or run the same destroy again, which waits for it",
                self.region
            )
        };
        let existed = self.locked(&stack, deadline, work, interrupted).await?;
        Ok(Destroyed {
            stack,
            outcome: if existed {
                DestroyOutcome::Deleted
            } else {
                DestroyOutcome::Absent
            },
            retained,
            history,
            seconds: started.elapsed().as_secs_f64(),
        })
    }
}

impl Deployer<'_> {
    /// Deletes every object version and delete marker in `bucket`, page by page; a bucket that
    /// is already gone is empty.
    async fn empty_bucket(&self, bucket: &str) -> anyhow::Result<()> {
        let step = self.progress.step(&format!("emptying bucket {bucket}"));
        let mut deleted = 0;
        loop {
            let listed = match self.s3.list_object_versions().bucket(bucket).send().await {
                Ok(listed) => listed,
                Err(error)
                    if error
                        .as_service_error()
                        .is_some_and(|e| e.meta().code() == Some("NoSuchBucket")) =>
                {
                    break;
                }
                Err(error) => {
                    return Err(anyhow::anyhow!(
                        "{}",
                        aws_sdk_s3::error::DisplayErrorContext(&error)
                    ))
                    .with_context(|| format!("listing what bucket {bucket} holds, to empty it"));
                }
            };
            let versions: Vec<(String, Option<String>)> = listed
                .versions()
                .iter()
                .map(|v| {
                    (
                        v.key().unwrap_or_default().to_owned(),
                        v.version_id().map(str::to_owned),
                    )
                })
                .chain(listed.delete_markers().iter().map(|m| {
                    (
                        m.key().unwrap_or_default().to_owned(),
                        m.version_id().map(str::to_owned),
                    )
                }))
                .collect();
            if versions.is_empty() {
                break;
            }
            for (key, version) in versions {
                self.s3
                    .delete_object()
                    .bucket(bucket)
                    .key(&key)
                    .set_version_id(version)
                    .send()
                    .await
                    .with_context(|| format!("deleting {key} from bucket {bucket}, to empty it"))?;
                deleted += 1;
            }
        }
        step.done(&format!(
            "emptied bucket {bucket} ({deleted} object versions)"
        ));
        Ok(())
    }
}

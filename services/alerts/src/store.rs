//! The alerts table: batched writes that retry what DynamoDB leaves unprocessed, and pages of one
//! user's alerts, newest first.

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use kit::{ApiError, Datetime};
use serde::Serialize;
use uuid::Uuid;

/// DynamoDB's limit on one BatchWriteItem.
const BATCH: usize = 25;
/// Attempts per batch before giving up: the first, then retries backing off from 50 ms (about 6 s
/// in all), well inside the function's timeout.
const ATTEMPTS: u32 = 8;
const FIRST_DELAY: Duration = Duration::from_millis(50);

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub category: String,
    pub subcategory: String,
    pub granularity: String,
    pub value: f64,
    pub event_date: Datetime,
    pub created_date: Datetime,
}

impl Alert {
    /// The sort key: dates are fixed-width UTC, so keys sort by time, and the id keeps two alerts
    /// of the same instant apart.
    fn event_key(&self) -> String {
        format!("{}#{}", self.event_date, self.alert_id)
    }

    fn item(&self) -> HashMap<String, AttributeValue> {
        let s = |value: String| AttributeValue::S(value);
        HashMap::from([
            ("user_id".to_owned(), s(self.user_id.to_string())),
            ("event_key".to_owned(), s(self.event_key())),
            ("alert_id".to_owned(), s(self.alert_id.to_string())),
            ("category".to_owned(), s(self.category.clone())),
            ("subcategory".to_owned(), s(self.subcategory.clone())),
            ("granularity".to_owned(), s(self.granularity.clone())),
            (
                "value".to_owned(),
                AttributeValue::N(self.value.to_string()),
            ),
            ("event_date".to_owned(), s(self.event_date.to_string())),
            ("created_date".to_owned(), s(self.created_date.to_string())),
        ])
    }

    fn from_item(item: &HashMap<String, AttributeValue>) -> Result<Alert, String> {
        let text = |name: &str| {
            item.get(name)
                .and_then(|v| v.as_s().ok())
                .ok_or_else(|| format!("no {name}"))
        };
        let parse = |name: &str| -> Result<String, String> { text(name).cloned() };
        Ok(Alert {
            alert_id: text("alert_id")?.parse().map_err(|_| "bad alert_id")?,
            user_id: text("user_id")?.parse().map_err(|_| "bad user_id")?,
            category: parse("category")?,
            subcategory: parse("subcategory")?,
            granularity: parse("granularity")?,
            value: item
                .get("value")
                .and_then(|v| v.as_n().ok())
                .and_then(|n| n.parse().ok())
                .ok_or("bad value")?,
            event_date: text("event_date")?.parse().map_err(|_| "bad event_date")?,
            created_date: text("created_date")?
                .parse()
                .map_err(|_| "bad created_date")?,
        })
    }
}

/// Sends `pending` with `send` (which returns what was left unprocessed) until nothing is left,
/// backing off between attempts; after [`ATTEMPTS`], or on an error, returns what is left.
pub async fn retry_unprocessed<T, E, F, Fut>(
    mut pending: Vec<T>,
    attempts: u32,
    first_delay: Duration,
    mut send: F,
) -> Result<(), (Vec<T>, Option<E>)>
where
    F: FnMut(Vec<T>) -> Fut,
    Fut: Future<Output = Result<Vec<T>, (Vec<T>, E)>>,
{
    let mut delay = first_delay;
    for attempt in 1..=attempts {
        match send(pending).await {
            Ok(left) if left.is_empty() => return Ok(()),
            Ok(left) => pending = left,
            Err((left, error)) => return Err((left, Some(error))),
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err((pending, None))
}

/// Some alerts were not stored.
#[derive(Debug)]
pub struct Incomplete {
    pub stored: usize,
    pub total: usize,
}

#[derive(Debug)]
pub struct AlertStore {
    dynamodb: kit::Lazy<aws_sdk_dynamodb::Client>,
    table: String,
}

impl AlertStore {
    pub fn new(sdk: &aws_config::SdkConfig, table: String) -> AlertStore {
        AlertStore {
            dynamodb: kit::Lazy::new(sdk, aws_sdk_dynamodb::Client::new),
            table,
        }
    }

    /// Stores every alert, 25 per request, retrying what DynamoDB leaves unprocessed.
    pub async fn put_all(&self, alerts: &[Alert]) -> Result<usize, Incomplete> {
        let mut stored = 0;
        for chunk in alerts.chunks(BATCH) {
            let requests: Vec<WriteRequest> = chunk
                .iter()
                .map(|alert| {
                    WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(alert.item()))
                                .build()
                                .expect("an item is set"),
                        )
                        .build()
                })
                .collect();
            let sent = requests.len();
            let outcome = retry_unprocessed(requests, ATTEMPTS, FIRST_DELAY, |batch| async move {
                let output = self
                    .dynamodb
                    .batch_write_item()
                    .request_items(&self.table, batch.clone())
                    .send()
                    .await
                    .map_err(|error| (batch, error))?;
                Ok(output
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.table))
                    .unwrap_or_default())
            })
            .await;
            match outcome {
                Ok(()) => stored += sent,
                Err((left, error)) => {
                    tracing::error!(?error, left = left.len(), "alerts left unstored");
                    return Err(Incomplete {
                        stored: stored + sent - left.len(),
                        total: alerts.len(),
                    });
                }
            }
        }
        Ok(stored)
    }

    /// Up to `limit` of `user`'s alerts between `start` and `end`, newest first, continuing
    /// after the sort key `after`; with the last key returned when there may be more.
    pub async fn page(
        &self,
        user: Uuid,
        start: Datetime,
        end: Datetime,
        limit: i32,
        after: Option<String>,
    ) -> Result<(Vec<Alert>, Option<String>), ApiError> {
        let exclusive_start = after.map(|key| {
            HashMap::from([
                ("user_id".to_owned(), AttributeValue::S(user.to_string())),
                ("event_key".to_owned(), AttributeValue::S(key)),
            ])
        });
        let output = self
            .dynamodb
            .query()
            .table_name(&self.table)
            .key_condition_expression("user_id = :user AND event_key BETWEEN :start AND :end")
            .expression_attribute_values(":user", AttributeValue::S(user.to_string()))
            .expression_attribute_values(":start", AttributeValue::S(start.to_string()))
            // `z` sorts after every character of the `#<uuid>` that follows the date.
            .expression_attribute_values(":end", AttributeValue::S(format!("{end}#z")))
            .scan_index_forward(false)
            .limit(limit)
            .set_exclusive_start_key(exclusive_start)
            .send()
            .await
            .map_err(ApiError::internal)?;
        let alerts = output
            .items()
            .iter()
            .filter_map(|item| match Alert::from_item(item) {
                Ok(alert) => Some(alert),
                Err(problem) => {
                    tracing::warn!(problem, "skipping a malformed alert item");
                    None
                }
            })
            .collect();
        let last = output
            .last_evaluated_key()
            .and_then(|key| key.get("event_key"))
            .and_then(|key| key.as_s().ok())
            .cloned();
        Ok((alerts, last))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    type Sent = std::future::Ready<Result<Vec<u32>, (Vec<u32>, ())>>;

    /// DynamoDB, as far as retries go: it leaves `unprocessed[i]` items of the i-th call.
    fn throttled(unprocessed: Vec<usize>) -> impl FnMut(Vec<u32>) -> Sent {
        let calls = Arc::new(Mutex::new(0));
        move |batch: Vec<u32>| {
            let mut calls = calls.lock().unwrap();
            let left = unprocessed
                .get(*calls)
                .copied()
                .unwrap_or(0)
                .min(batch.len());
            *calls += 1;
            std::future::ready(Ok(batch[batch.len() - left..].to_vec()))
        }
    }

    #[tokio::test(start_paused = true)]
    async fn unprocessed_items_are_sent_again_until_none_are_left() {
        let outcome =
            retry_unprocessed((0..25).collect(), 8, FIRST_DELAY, throttled(vec![10, 3, 1])).await;
        assert!(outcome.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_last_attempt_what_is_left_is_returned() {
        let started = tokio::time::Instant::now();
        let outcome = retry_unprocessed(
            (0..25).collect(),
            4,
            FIRST_DELAY,
            throttled(vec![20, 15, 9, 2]),
        )
        .await;
        let (left, error) = outcome.unwrap_err();
        assert_eq!(left, [23, 24]);
        assert!(error.is_none());
        // Backed off 50, 100 and 200 ms between the four attempts.
        assert_eq!(started.elapsed(), Duration::from_millis(350));
    }

    #[tokio::test(start_paused = true)]
    async fn an_error_stops_at_once_with_what_is_left() {
        let outcome = retry_unprocessed(vec![1, 2, 3], 8, FIRST_DELAY, |batch: Vec<u32>| {
            std::future::ready(Err::<Vec<u32>, _>((batch, "throttled")))
        })
        .await;
        assert_eq!(outcome.unwrap_err(), (vec![1, 2, 3], Some("throttled")));
    }
}

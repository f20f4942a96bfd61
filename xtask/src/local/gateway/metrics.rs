//! The metrics Lambda and API Gateway publish for each request, as the local gateway serves it,
//! put to the emulator's CloudWatch, where the deployment group's alarms are evaluated on them
//! (`xtask/emulator_traffic.py`): `AWS/Lambda` `Invocations`, `Errors` and `Duration` by function
//! and by function and alias (`Resource`), and `AWS/ApiGateway` `Count`, `4XXError`, `5XXError`
//! and `Latency` by API and stage. The dimensions are exactly those the templates' alarms name
//! (`cloudformation/apigateway.yaml`). One thread sends them, so a request never waits on
//! CloudWatch; a failure is said once.

use std::sync::mpsc::Sender;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum, StandardUnit};

/// Where a gateway's requests are counted; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics {
    sender: Sender<Request>,
}

/// What one request came to, with whom to count it under.
#[derive(Debug)]
pub struct Request {
    /// The function's name, invoked through its `live` alias.
    pub function: String,
    /// The API's name (`<service>-<environment>`), and its stage.
    pub api: String,
    pub stage: String,
    pub status: u16,
    /// The function failed: it crashed, timed out, or failed its init.
    pub failed: bool,
    pub duration: Duration,
}

impl Metrics {
    /// Starts the sending thread for the emulator behind `sdk`.
    pub fn start(sdk: &aws_config::SdkConfig) -> Metrics {
        let client = aws_sdk_cloudwatch::Client::new(sdk);
        let sender = super::sending_thread(move |runtime, request: Request| {
            runtime.block_on(send(&client, &request)).map_err(|error| {
                format!(
                    "[metrics] could not put {}'s metrics in the emulator's CloudWatch: {}",
                    request.function,
                    aws_sdk_cloudwatch::error::DisplayErrorContext(&error)
                )
            })
        });
        Metrics { sender }
    }

    pub fn record(&self, request: Request) {
        let _ = self.sender.send(request);
    }
}

fn dimensions(pairs: &[(&str, &str)]) -> Vec<Dimension> {
    pairs
        .iter()
        .map(|(name, value)| Dimension::builder().name(*name).value(*value).build())
        .collect()
}

fn datum(name: &str, value: f64, unit: StandardUnit, dimensions: Vec<Dimension>) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .value(value)
        .unit(unit)
        .set_dimensions(Some(dimensions))
        .timestamp(std::time::SystemTime::now().into())
        .build()
}

/// The data points of one request, by namespace.
pub fn data(request: &Request) -> [(&'static str, Vec<MetricDatum>); 2] {
    let resource = format!("{}:live", request.function);
    let milliseconds = request.duration.as_secs_f64() * 1000.0;
    let flag = |yes: bool| if yes { 1.0 } else { 0.0 };
    let mut lambda = Vec::new();
    for by in [
        dimensions(&[("FunctionName", &request.function)]),
        dimensions(&[("FunctionName", &request.function), ("Resource", &resource)]),
    ] {
        lambda.push(datum("Invocations", 1.0, StandardUnit::Count, by.clone()));
        lambda.push(datum(
            "Errors",
            flag(request.failed),
            StandardUnit::Count,
            by.clone(),
        ));
        lambda.push(datum(
            "Duration",
            milliseconds,
            StandardUnit::Milliseconds,
            by,
        ));
    }
    let by = dimensions(&[("ApiName", &request.api), ("Stage", &request.stage)]);
    let api = vec![
        datum("Count", 1.0, StandardUnit::Count, by.clone()),
        datum(
            "4XXError",
            flag((400..500).contains(&request.status)),
            StandardUnit::Count,
            by.clone(),
        ),
        datum(
            "5XXError",
            flag(request.status >= 500),
            StandardUnit::Count,
            by.clone(),
        ),
        datum("Latency", milliseconds, StandardUnit::Milliseconds, by),
    ];
    [("AWS/Lambda", lambda), ("AWS/ApiGateway", api)]
}

async fn send(
    client: &aws_sdk_cloudwatch::Client,
    request: &Request,
) -> Result<(), aws_sdk_cloudwatch::Error> {
    for (namespace, data) in data(request) {
        client
            .put_metric_data()
            .namespace(namespace)
            .set_metric_data(Some(data))
            .send()
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_request_counts_where_the_alarms_look() {
        let request = Request {
            function: "hardware-dev-apigateway-execute".into(),
            api: "hardware-dev".into(),
            stage: "v1".into(),
            status: 502,
            failed: true,
            duration: Duration::from_millis(12),
        };
        let [(lambda_namespace, lambda), (api_namespace, api)] = data(&request);
        assert_eq!(lambda_namespace, "AWS/Lambda");
        let errors: Vec<_> = lambda
            .iter()
            .filter(|d| d.metric_name() == Some("Errors"))
            .map(|d| {
                let by: Vec<_> = d
                    .dimensions()
                    .iter()
                    .map(|x| format!("{}={}", x.name().unwrap(), x.value().unwrap()))
                    .collect();
                (by.join(","), d.value().unwrap())
            })
            .collect();
        assert_eq!(
            errors,
            [
                (
                    "FunctionName=hardware-dev-apigateway-execute".to_owned(),
                    1.0
                ),
                (
                    "FunctionName=hardware-dev-apigateway-execute,\
                     Resource=hardware-dev-apigateway-execute:live"
                        .to_owned(),
                    1.0
                ),
            ]
        );
        assert_eq!(api_namespace, "AWS/ApiGateway");
        let five = api
            .iter()
            .find(|d| d.metric_name() == Some("5XXError"))
            .unwrap();
        assert_eq!(five.value(), Some(1.0));
        assert_eq!(
            five.dimensions()
                .iter()
                .map(|x| x.value().unwrap())
                .collect::<Vec<_>>(),
            ["hardware-dev", "v1"]
        );
    }
}

//! Items put into a local run's tables when asked (`serve --seed`, `bench lambda`): a JSON
//! object mapping a table's logical id to its items, stored as DynamoDB stores JSON.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use aws_sdk_dynamodb::types::AttributeValue;

use super::provision::local_name;
use crate::progress::Progress;

pub type Seed = BTreeMap<String, Vec<serde_json::Map<String, serde_json::Value>>>;

pub fn read_seed(path: &Path) -> anyhow::Result<Seed> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| {
        format!(
            "{} is not a seed file: a JSON object mapping a table's logical id to a list of items",
            path.display()
        )
    })
}

pub async fn put_seed(
    sdk: &aws_config::SdkConfig,
    service: &str,
    scope: &str,
    seed: &Seed,
    progress: Progress,
) -> anyhow::Result<()> {
    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    for (id, items) in seed {
        let name = local_name(service, scope, id);
        for item in items {
            let item = item
                .iter()
                .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
                .collect::<anyhow::Result<_>>()?;
            dynamodb
                .put_item()
                .table_name(&name)
                .set_item(Some(item))
                .send()
                .await
                .with_context(|| format!("seeding {name}"))?;
        }
        progress.note(&format!("seeded {name} with {} items", items.len()));
    }
    Ok(())
}

/// A JSON value as DynamoDB stores it.
fn attribute(value: &serde_json::Value) -> anyhow::Result<AttributeValue> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(items) => {
            AttributeValue::L(items.iter().map(attribute).collect::<anyhow::Result<_>>()?)
        }
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), attribute(v)?)))
                .collect::<anyhow::Result<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_values_become_dynamodb_attributes() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"s": "x", "n": 1.5, "b": true, "l": [1], "m": {"k": null}}"#)
                .unwrap();
        let AttributeValue::M(map) = attribute(&value).unwrap() else {
            panic!("not a map")
        };
        assert_eq!(map["s"], AttributeValue::S("x".into()));
        assert_eq!(map["n"], AttributeValue::N("1.5".into()));
        assert_eq!(map["b"], AttributeValue::Bool(true));
        assert_eq!(
            map["l"],
            AttributeValue::L(vec![AttributeValue::N("1".into())])
        );
        assert_eq!(
            map["m"],
            AttributeValue::M([("k".to_owned(), AttributeValue::Null(true))].into())
        );
    }
}

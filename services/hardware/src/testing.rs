//! For tests (feature `testing`), here and in services that call this one: an accessory user pool
//! in the AWS emulator, set up as `cloudformation/hardware-environment.yaml` sets up the real one.

use aws_sdk_cognitoidentityprovider::types::{
    AttributeDataType, ExplicitAuthFlowsType, PasswordPolicyType, SchemaAttributeType,
    UserPoolPolicyType,
};
use kit::testing::emulator;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Pool {
    pub id: String,
    pub client_id: String,
}

/// A pool of its own with the accessory attributes and the contract's password rule (8+ characters).
pub async fn pool() -> Pool {
    create_pool(true).await
}

/// A pool like [`pool`] but with Cognito's default password policy (upper and lower case, digits,
/// symbols), which refuses passwords the contract allows: what a pool made without the template's
/// policy does.
pub async fn strict_pool() -> Pool {
    create_pool(false).await
}

async fn create_pool(contract_policy: bool) -> Pool {
    let cognito = aws_sdk_cognitoidentityprovider::Client::new(emulator().await);
    let mut create = cognito
        .create_user_pool()
        .pool_name(format!("accessories-{}", Uuid::new_v4().simple()));
    if contract_policy {
        create = create.policies(
            UserPoolPolicyType::builder()
                .password_policy(
                    PasswordPolicyType::builder()
                        .minimum_length(8)
                        .require_lowercase(false)
                        .require_uppercase(false)
                        .require_numbers(false)
                        .require_symbols(false)
                        .build(),
                )
                .build(),
        );
    }
    for name in [
        "hardware_model",
        "firmware_version",
        "settings_key",
        "bluetooth_name",
        "battery_level",
        "memory_level",
        "state",
        "owner_id",
    ] {
        create = create.schema(
            SchemaAttributeType::builder()
                .name(name)
                .attribute_data_type(AttributeDataType::String)
                .mutable(true)
                .build(),
        );
    }
    let id = create
        .send()
        .await
        .expect("the emulator creates the pool")
        .user_pool
        .and_then(|p| p.id)
        .expect("a pool id");
    let client_id = cognito
        .create_user_pool_client()
        .user_pool_id(&id)
        .client_name("hardware")
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowAdminUserPasswordAuth)
        .explicit_auth_flows(ExplicitAuthFlowsType::AllowRefreshTokenAuth)
        .send()
        .await
        .expect("the emulator creates the client")
        .user_pool_client
        .and_then(|c| c.client_id)
        .expect("a client id");
    Pool { id, client_id }
}

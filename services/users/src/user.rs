//! `GET /user/{uuid}`: a user, with their team, training groups and mass.

use axum::extract::State;
use kit::{ApiError, Datetime, Json, Path, Principal};
use serde::Serialize;
use uuid::Uuid;

use crate::Users;

const POUNDS_PER_KILOGRAM: f64 = 2.204_622_621_8;

#[derive(Debug, Serialize)]
pub struct UserBody {
    user: User,
}

#[derive(Debug, Serialize)]
struct User {
    user_id: Uuid,
    role: String,
    created_date: Datetime,
    updated_date: Datetime,
    /// The user's team; `null` for a user in none. (The legacy schema allows several; the oldest
    /// membership is the team, as the legacy service answered.)
    team_id: Option<Uuid>,
    training_group_ids: Vec<Uuid>,
    /// `null` when the user never gave it.
    mass: Option<Mass>,
}

#[derive(Debug, Serialize)]
struct Mass {
    kg: f64,
    lb: f64,
}

impl Mass {
    fn from_kilograms(kg: f64) -> Mass {
        let round = |value: f64| (value * 100.0).round() / 100.0;
        Mass {
            kg: round(kg),
            lb: round(kg * POUNDS_PER_KILOGRAM),
        }
    }
}

/// The user themself, or any service, may read a user.
fn may_read(principal: &Principal, user_id: Uuid) -> Result<(), ApiError> {
    match principal {
        Principal::User(caller) if *caller == user_id => Ok(()),
        Principal::Service { .. } => Ok(()),
        Principal::User(_) => Err(ApiError::Forbidden(
            "a user's token reads only that user".into(),
        )),
        Principal::Accessory(_) => Err(ApiError::Forbidden(
            "accessory tokens cannot read users".into(),
        )),
    }
}

pub async fn get(
    State(users): State<Users>,
    principal: Principal,
    Path(user_id): Path<Uuid>,
) -> Result<Json<UserBody>, ApiError> {
    may_read(&principal, user_id)?;
    let client = users.database.connection().await?;
    let row = client
        .query_opt(
            "SELECT role, mass_kg, created_at, updated_at,
                    (SELECT team_id FROM teams_users t WHERE t.user_id = u.id
                      ORDER BY created_at, team_id LIMIT 1) AS team_id,
                    ARRAY(SELECT training_group_id FROM training_groups_users g
                           WHERE g.user_id = u.id ORDER BY training_group_id) AS training_group_ids
             FROM users u WHERE id = $1",
            &[&user_id],
        )
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| ApiError::NoSuchEntity(format!("no user {user_id}")))?;
    let mass_kg: Option<f64> = row.get("mass_kg");
    Ok(Json(UserBody {
        user: User {
            user_id,
            role: row.get("role"),
            created_date: Datetime::from_utc(row.get("created_at")),
            updated_date: Datetime::from_utc(row.get("updated_at")),
            team_id: row.get("team_id"),
            training_group_ids: row.get("training_group_ids"),
            mass: mass_kg.map(Mass::from_kilograms),
        },
    }))
}

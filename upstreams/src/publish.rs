//! `POST /notifications`: validate, publish at once, reply 201 with the published notification.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;

use crate::error::ApiError;
use crate::json_body::JsonBody;
use crate::notifications::{NewNotification, Notification};
use crate::state::AppState;

/// Parses the body in two steps, first as JSON (`invalid_json`) and then as a notification
/// (`invalid_notification`), so a client can tell a broken body from a wrong one. A rejected
/// request publishes nothing.
pub async fn create(
    State(state): State<AppState>,
    JsonBody(value): JsonBody<serde_json::Value>,
) -> Result<(StatusCode, Json<Notification>), ApiError> {
    let new = NewNotification::from_json(value)?;
    let notification = state.notifications.publish(new);
    tracing::debug!(id = %notification.id, "published a notification");
    Ok((StatusCode::CREATED, Json(notification)))
}

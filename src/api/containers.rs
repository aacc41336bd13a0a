//! /api/v1/containers: tracked containers and their latest stats.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use crate::app::AppState;

pub async fn list(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "items": app.containers.samples(), "next_cursor": null }))
}

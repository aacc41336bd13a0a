//! /api/v1/nodes: the fleet's nodes and the state of their leases (API.md
//! "Fleet"); on SQLite, this one node.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiResult;
use super::state::AppState;
use crate::domain::types::Node;
use crate::store::nodes;

pub async fn list(State(app): State<AppState>) -> ApiResult<Json<Value>> {
    let (rows, now) = app.store.read(nodes::list).await?;
    let items: Vec<Node> = rows.iter().map(|n| n.to_api(now)).collect();
    Ok(Json(json!({ "items": items, "next_cursor": null })))
}

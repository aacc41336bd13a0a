//! /api/v1/nodes: the fleet's nodes and the state of their leases (API.md
//! "Fleet"); on SQLite, this one node.

use axum::Json;
use axum::extract::State;

use super::error::ApiResult;
use super::extract::Listing;
use super::state::AppState;
use crate::domain::types::Node;
use crate::store::nodes;

/// List the fleet's nodes and the state of their leases.
#[utoipa::path(get, path = "/nodes", tag = "fleet", responses(
    (status = 200, description = "Every node, in one page", body = Listing<Node>),
))]
pub async fn list(State(app): State<AppState>) -> ApiResult<Json<Listing<Node>>> {
    let (rows, now) = app.store.read(nodes::list).await?;
    Ok(Json(Listing { items: rows.iter().map(|n| n.to_api(now)).collect(), next_cursor: None }))
}

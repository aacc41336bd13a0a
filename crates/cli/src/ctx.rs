//! What every command gets: the client, and whether to print JSON.

use serde_json::Value;

use super::client::Client;
use super::error::Result;
use super::render::{self, View};

pub(super) struct Ctx {
    pub client: Client,
    pub json: bool,
}

impl Ctx {
    pub fn show(&self, body: &Value, view: View) -> Result<()> {
        render::show(self.json, body, view)
    }
}

//! The HTTP client: URLs under the daemon's base, the bearer token, and the
//! one place where transport failures and error replies become `CliError`.

use std::time::Duration;

use reqwest::{Method, Response, Url};
use serde_json::{Map, Value, json};

use super::error::{CliError, Result};

/// How long to wait for the TCP connection before calling the daemon
/// unreachable; replies themselves may take as long as they take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    token: Option<String>,
}

/// Query parameters in order; absent options are left out.
#[derive(Default, Clone)]
pub struct Query(Vec<(&'static str, String)>);

impl Query {
    pub fn opt(mut self, key: &'static str, value: Option<impl ToString>) -> Query {
        if let Some(v) = value {
            self.set(key, v.to_string());
        }
        self
    }

    fn set(&mut self, key: &'static str, value: String) {
        self.0.retain(|(k, _)| *k != key);
        self.0.push((key, value));
    }
}

/// A JSON object of the fields that are present: a PATCH must not send a
/// null it does not mean (`image: null` clears the image).
pub fn body<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    let map: Map<String, Value> = fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect();
    Value::Object(map)
}

impl Client {
    pub fn new(base: Url, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            // The daemon is addressed directly, as the WebSocket (which never
            // goes through a proxy) addresses it.
            .no_proxy()
            .connect_timeout(CONNECT_TIMEOUT)
            .build()
            .map_err(|e| CliError::Failed(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Client { http, base, token })
    }

    /// The same daemon with another token (/metrics has its own).
    pub fn with_token(&self, token: Option<String>) -> Client {
        Client { token, ..self.clone() }
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The base URL plus path segments (each percent-encoded, so a slug or
    /// id can never change the path) and a query.
    pub fn url(&self, segments: &[&str], query: &Query) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("--url is checked to be http").pop_if_empty().extend(segments);
        if !query.0.is_empty() {
            url.query_pairs_mut().extend_pairs(&query.0);
        }
        url
    }

    fn api_url(&self, segments: &[&str], query: &Query) -> Url {
        let path: Vec<&str> = ["api", "v1"].iter().chain(segments).copied().collect();
        self.url(&path, query)
    }

    /// Sends a request; any status but 2xx is an error.
    async fn send(&self, method: Method, url: Url, body: Option<&Value>) -> Result<Response> {
        let mut req = self.http.request(method, url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| self.transport(e))?;
        Err(CliError::from_reply(status, &text))
    }

    fn transport(&self, e: reqwest::Error) -> CliError {
        if e.is_connect() || e.is_timeout() {
            CliError::Unreachable { url: self.base.to_string(), reason: CliError::root_cause(&e) }
        } else {
            CliError::Failed(format!("talking to crewshipd at {} failed: {}", self.base, CliError::root_cause(&e)))
        }
    }

    /// A JSON API call: `/api/v1/<segments>?<query>`.
    async fn call(&self, method: Method, segments: &[&str], query: &Query, body: Option<&Value>) -> Result<Value> {
        let url = self.api_url(segments, query);
        let resp = self.send(method, url.clone(), body).await?;
        resp.json().await.map_err(|e| CliError::Failed(format!("{url} did not answer with JSON: {e}")))
    }

    pub async fn get(&self, segments: &[&str], query: &Query) -> Result<Value> {
        self.call(Method::GET, segments, query, None).await
    }

    pub async fn post(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::POST, segments, &Query::default(), Some(body)).await
    }

    pub async fn patch(&self, segments: &[&str], body: &Value) -> Result<Value> {
        self.call(Method::PATCH, segments, &Query::default(), Some(body)).await
    }

    pub async fn delete(&self, segments: &[&str]) -> Result<Value> {
        self.call(Method::DELETE, segments, &Query::default(), None).await
    }

    /// A GET whose answer is looked at whatever its status: the status,
    /// the content type and the body (`crewship doctor`).
    pub async fn probe(&self, url: Url) -> Result<(u16, String, String)> {
        let mut req = self.http.get(url);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| self.transport(e))?;
        let status = resp.status().as_u16();
        let kind = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body = resp.text().await.map_err(|e| self.transport(e))?;
        Ok((status, kind, body))
    }

    pub fn api(&self, segments: &[&str]) -> Url {
        self.api_url(segments, &Query::default())
    }

    /// A plain-text GET of any path under the base (run output, /metrics).
    pub async fn text(&self, url: Url) -> Result<String> {
        let resp = self.send(Method::GET, url, None).await?;
        resp.text().await.map_err(|e| self.transport(e))
    }

    pub async fn api_text(&self, segments: &[&str]) -> Result<String> {
        self.text(self.api_url(segments, &Query::default())).await
    }

    /// A list endpoint: one page, or with `all` every page (following
    /// `next_cursor`) merged into one `{"items": [...], "next_cursor": null}`.
    pub async fn list(&self, segments: &[&str], mut query: Query, all: bool) -> Result<Value> {
        let mut page = self.get(segments, &query).await?;
        if !all {
            return Ok(page);
        }
        let mut items = Vec::new();
        loop {
            match page["items"].take() {
                Value::Array(more) => items.extend(more),
                other => return Err(CliError::Failed(format!("a list page without items: {other}"))),
            }
            let Some(cursor) = page["next_cursor"].as_str() else {
                return Ok(json!({ "items": items, "next_cursor": null }));
            };
            query.set("cursor", cursor.to_string());
            page = self.get(segments, &query).await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_encode_segments_and_keep_a_base_path() {
        let c = Client::new(Url::parse("http://h:1/prefix/").unwrap(), None).unwrap();
        let q = Query::default().opt("crew", Some("a b")).opt("limit", None::<u32>);
        assert_eq!(c.api_url(&["crews", "x/y"], &q).as_str(), "http://h:1/prefix/api/v1/crews/x%2Fy?crew=a+b");
        let bare = Client::new(Url::parse("http://h:1").unwrap(), None).unwrap();
        assert_eq!(bare.url(&["metrics"], &Query::default()).as_str(), "http://h:1/metrics");
    }

    #[test]
    fn bodies_leave_out_absent_fields() {
        let b = body([("name", Some("N".into())), ("max", None), ("image", Some(Value::Null))]);
        assert_eq!(b, json!({"name": "N", "image": null}));
    }
}

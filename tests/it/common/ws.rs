//! A WebSocket test client over the real `/ws`.

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};

use super::PATIENCE;

pub struct Client {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Client {
    /// Connects to `<base>/ws` with extra request headers.
    pub async fn connect(base: &str, headers: &[(&str, &str)]) -> Client {
        Client::try_connect(base, headers).await.expect("websocket connect")
    }

    pub async fn try_connect(base: &str, headers: &[(&str, &str)]) -> Result<Client, String> {
        let url = format!("{}/ws", base.replacen("http://", "ws://", 1));
        let mut req = url.into_client_request().map_err(|e| e.to_string())?;
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let (stream, _) = connect_async(req).await.map_err(|e| e.to_string())?;
        Ok(Client { stream })
    }

    /// A WebSocket Ping control frame.
    pub async fn ping(&mut self) {
        self.stream.send(Message::Ping(Default::default())).await.expect("ws ping");
    }

    pub async fn send(&mut self, frame: Value) {
        self.stream.send(Message::text(frame.to_string())).await.expect("ws send");
    }

    /// The next JSON frame; None once the server closed the connection
    /// (with the close code, if any, in `closed`).
    pub async fn next(&mut self) -> Option<Value> {
        loop {
            let msg = tokio::time::timeout(PATIENCE, self.stream.next()).await.expect("no websocket frame in time")?;
            match msg {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).expect("json frame")),
                Ok(Message::Close(frame)) => {
                    return Some(json!({ "closed": frame.map(|f| u16::from(f.code)) }));
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub async fn next_matching(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        loop {
            let f = self.next().await.expect("connection closed while waiting for a frame");
            assert!(f.get("closed").is_none(), "connection closed while waiting: {f}");
            if pred(&f) {
                return f;
            }
        }
    }

    /// Subscribes and waits for the acknowledgement.
    pub async fn subscribe(&mut self, channels: &[&str]) {
        self.send(json!({ "type": "subscribe", "channels": channels })).await;
        self.next_matching(|f| f["type"] == "subscribed").await;
    }
}

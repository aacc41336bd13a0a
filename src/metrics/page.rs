//! Rendered pages, reused for a short live window. Rendering reads /proc,
//! advances jemalloc's statistics epoch and encodes every family (a few
//! hundred microseconds, a gzip on top): per request, that would make a
//! scrape storm cost CPU in proportion to its rate. A page is therefore
//! served again while it is younger than the live window and shows the
//! current database snapshot; process figures are at most that old.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use tokio::sync::Mutex;

use super::exposition::Format;
use super::snapshot::DbSnapshot;

struct Page {
    rendered: Instant,
    db: Arc<DbSnapshot>,
    body: Bytes,
}

pub struct Pages {
    live_for: Duration,
    pages: Mutex<HashMap<(Format, bool), Page>>,
}

/// True when `Accept-Encoding` accepts gzip (q > 0).
pub fn accepts_gzip(accept_encoding: Option<&str>) -> bool {
    accept_encoding.unwrap_or_default().split(',').any(|coding| {
        let mut parts = coding.split(';').map(str::trim);
        let name = parts.next().unwrap_or_default();
        let q = parts.find_map(|p| p.strip_prefix("q=")).and_then(|q| q.parse::<f32>().ok()).unwrap_or(1.0);
        (name.eq_ignore_ascii_case("gzip") || name == "*") && q > 0.0
    })
}

fn gzip(text: &str) -> Bytes {
    let mut enc = GzEncoder::new(Vec::with_capacity(text.len() / 4), Compression::default());
    // Writing into a Vec cannot fail.
    let _ = enc.write_all(text.as_bytes());
    Bytes::from(enc.finish().unwrap_or_default())
}

impl Pages {
    pub fn new(live_for: Duration) -> Pages {
        Pages { live_for, pages: Mutex::new(HashMap::new()) }
    }

    /// The page for `db` in `format` (gzip-compressed if `gzipped`),
    /// rendered by `render` unless a fresh one exists.
    pub async fn get(
        &self,
        db: Arc<DbSnapshot>,
        format: Format,
        gzipped: bool,
        render: impl FnOnce(&DbSnapshot) -> String,
    ) -> Bytes {
        let mut pages = self.pages.lock().await;
        if let Some(p) = pages.get(&(format, gzipped))
            && p.rendered.elapsed() < self.live_for
            && Arc::ptr_eq(&p.db, &db)
        {
            return p.body.clone();
        }
        let text = render(&db);
        let body = if gzipped { gzip(&text) } else { Bytes::from(text) };
        pages.insert((format, gzipped), Page { rendered: Instant::now(), db, body: body.clone() });
        body
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_negotiation() {
        assert!(accepts_gzip(Some("gzip")));
        assert!(accepts_gzip(Some("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(Some("*")));
        assert!(!accepts_gzip(Some("gzip;q=0")));
        assert!(!accepts_gzip(Some("br, deflate")));
        assert!(!accepts_gzip(None));
    }
}

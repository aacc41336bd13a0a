//! What /metrics shows (METRICS.md): the exposition formats, the families,
//! process statistics, the live figures and their sources, the DB snapshot
//! cache and the rendered pages. The HTTP handler (the scrapers' gate and
//! content negotiation) is `api::metrics`.

pub mod exposition;
pub mod families;
pub mod live;
pub mod page;
pub mod process;
pub mod snapshot;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;

use crate::store::Store;
use exposition::Format;
use live::Sources;
use snapshot::{DbSnapshot, SnapshotCache};

/// What the page gets of the configuration (see the settings of the same
/// names).
pub struct Settings {
    /// Labels every series.
    pub hostname: String,
    pub cache_ttl: Duration,
    pub live_window: Duration,
}

/// The page and what it is made of: the live sources, the DB snapshot
/// cache, the rendered pages.
pub struct Metrics {
    sources: Sources,
    hostname: String,
    cache: Arc<SnapshotCache>,
    pages: page::Pages,
}

impl Metrics {
    pub fn new(store: Store, sources: Sources, settings: Settings) -> Metrics {
        Metrics {
            sources,
            hostname: settings.hostname,
            cache: Arc::new(SnapshotCache::new(store, settings.cache_ttl)),
            pages: page::Pages::new(settings.live_window),
        }
    }

    /// The page in `format`, gzip-compressed if `gzipped`: the current DB
    /// snapshot and the live figures, or a page rendered from that snapshot
    /// within the live window.
    pub async fn page(&self, format: Format, gzipped: bool) -> Bytes {
        let db = self.cache.get().await;
        self.pages
            .get(db, format, gzipped, |db| {
                render(&self.sources.read(self.cache.computations()), db, &self.hostname, format)
            })
            .await
    }
}

/// Renders the page: the live figures plus the DB block `db`, every series
/// labelled with `hostname`.
pub fn render(live: &families::Live, db: &DbSnapshot, hostname: &str, format: Format) -> String {
    exposition::encode(&families::build(live, db), hostname, format)
}

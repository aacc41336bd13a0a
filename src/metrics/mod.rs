//! What /metrics shows (METRICS.md): the exposition formats, the families,
//! process statistics, the DB snapshot cache and the rendered pages. The
//! HTTP handler is `api::metrics`.

pub mod exposition;
pub mod families;
pub mod page;
pub mod process;
pub mod snapshot;

use std::sync::Arc;

use exposition::Format;
use snapshot::{DbSnapshot, SnapshotCache};

/// The snapshot cache and the rendered pages.
pub struct Metrics {
    pub cache: Arc<SnapshotCache>,
    pub pages: page::Pages,
}

impl Metrics {
    pub fn new(cache: SnapshotCache, live_window: std::time::Duration) -> Metrics {
        Metrics { cache: Arc::new(cache), pages: page::Pages::new(live_window) }
    }
}

/// Renders the page: the live figures plus the DB block `db`, every series
/// labelled with `hostname`.
pub fn render(live: &families::Live, db: &DbSnapshot, hostname: &str, format: Format) -> String {
    exposition::encode(&families::build(live, db), hostname, format)
}

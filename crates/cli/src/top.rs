//! `crewship top`: the key numbers of `/metrics`, refreshed in place.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use reqwest::Url;
use serde::{Serialize, Serializer};

use super::client::{Client, Query};
use super::ctx::Ctx;
use super::error::{CliError, Result};
use super::prom::Scrape;
use super::render;

/// Cursor home, then clear the screen: each frame replaces the last.
const CLEAR: &str = "\x1b[H\x1b[2J";
/// Rates are over the last minute, the failure ratio over the seed alert's
/// ten minutes (each shorter while `top` has not watched that long).
const RATE_WINDOW: Duration = Duration::from_secs(60);
const RATIO_WINDOW: Duration = Duration::from_secs(600);

/// The running totals rates are computed from, as of one scrape.
#[derive(Clone, Copy)]
struct Totals {
    at: Instant,
    started: f64,
    failed: f64,
    spend_usd: f64,
}

/// Totals seen, oldest first, as far back as the longest window.
#[derive(Default)]
struct History(VecDeque<Totals>);

impl History {
    /// Adds `now`, forgetting what the longest window no longer needs.
    fn push(&mut self, now: Totals) {
        while self.0.front().is_some_and(|t| now.at.duration_since(t.at) > RATIO_WINDOW) {
            self.0.pop_front();
        }
        self.0.push_back(now);
    }

    /// The oldest totals within `window` of the newest (never the newest).
    fn since(&self, window: Duration) -> Option<Totals> {
        let now = self.0.back()?;
        self.0.iter().find(|t| now.at.duration_since(t.at) <= window && t.at < now.at).copied()
    }
}

#[derive(Args)]
pub struct TopArgs {
    /// Time between refreshes (2s, 500ms, 1m). The daemon recomputes its
    /// database-derived numbers at most every 15 s by default.
    #[arg(long, default_value = "2s", value_parser = interval)]
    interval: Duration,
    /// Print one frame and exit.
    #[arg(long)]
    once: bool,
    /// Bearer token for /metrics (its own, not the API's); loopback needs none.
    #[arg(long, env = "CREWSHIP_METRICS_TOKEN", hide_env_values = true)]
    metrics_token: Option<String>,
}

fn interval(s: &str) -> std::result::Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("the interval must be longer than zero".into()),
        Err(e) => Err(e.to_string()),
    }
}

pub async fn run(ctx: &Ctx, args: TopArgs) -> Result<()> {
    let client = ctx.client.with_token(args.metrics_token);
    let url = client.url(&["metrics"], &Query::default());
    // Escape codes only for a person at a terminal; pipes and files get
    // plain frames separated by blank lines (or JSON lines with --json).
    let tty = !ctx.json && std::io::stdout().is_terminal();
    let mut ticks = tokio::time::interval(args.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    let mut history = History::default();
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        let frame = match scrape(&client, &url).await {
            Ok(mut frame) => {
                frame.windowed(&mut history);
                frame
            }
            Err(e) if first => return Err(e),
            // A live view outlasts a daemon restart: say so and keep trying.
            Err(e) => {
                eprintln!("crewship: {e}");
                continue;
            }
        };
        let text = if ctx.json { serde_json::to_string(&frame).expect("a frame serialises") } else { frame.render() };
        let lead = match (tty, first || ctx.json) {
            (true, _) => CLEAR,
            (false, true) => "",
            (false, false) => "\n",
        };
        render::print(&format!("{lead}{text}\n"))?;
        if args.once {
            return Ok(());
        }
        first = false;
    }
}

async fn scrape(client: &Client, url: &Url) -> Result<Frame> {
    let page = client.text(url.clone()).await.map_err(|e| match e {
        // /metrics answers a client it does not serve exactly as a path
        // that does not exist, so say what usually causes that.
        CliError::Api { status: 404, .. } => CliError::Api {
            status: 404,
            message: format!("no /metrics at {url} for this client; from a remote host pass --metrics-token"),
        },
        other => other,
    })?;
    Frame::from_scrape(&Scrape::parse(&page), url)
}

/// What `top` shows, and with --json prints: numbers that are missing from
/// the page are null (shown as `?`).
#[derive(Serialize)]
struct Frame {
    url: String,
    scraped_at: String,
    version: Option<String>,
    hostname: Option<String>,
    uptime_seconds: Option<f64>,
    tasks: Option<f64>,
    ws_connections: Option<f64>,
    memory_alloc_bytes: Option<f64>,
    memory_sys_bytes: Option<f64>,
    resident_memory_bytes: Option<f64>,
    #[serde(serialize_with = "as_map")]
    assignments: Vec<(String, f64)>,
    queue_depth: Option<f64>,
    queue_crews: Option<f64>,
    queue_depth_max: Option<f64>,
    #[serde(serialize_with = "as_map")]
    pipeline_runs: Vec<(String, f64)>,
    #[serde(serialize_with = "as_map")]
    run_events: Vec<(String, f64)>,
    /// Runs started and failed per minute, and spend per hour, over the
    /// last minute; null until a second scrape.
    runs_started_per_min: Option<f64>,
    runs_failed_per_min: Option<f64>,
    spend_usd_per_hour: Option<f64>,
    /// failed / started runs over the last ten minutes (the seed alert's
    /// window; shorter while top has watched less): null without runs in it.
    failure_ratio: Option<f64>,
    /// The span the ratio covers, seconds.
    failure_ratio_window_seconds: Option<f64>,
    #[serde(serialize_with = "as_map")]
    llm_calls: Vec<(String, f64)>,
    #[serde(serialize_with = "as_map")]
    llm_cost_usd: Vec<(String, f64)>,
    containers_tracked: Option<f64>,
    containers_reporting: Option<f64>,
    snapshot_age_seconds: Option<f64>,
    collectors_down: Vec<String>,
}

/// Label/value pairs as a JSON object, in the page's order.
fn as_map<S: Serializer>(pairs: &[(String, f64)], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

fn of(pairs: &[(String, f64)], key: &str) -> Option<f64> {
    pairs.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

impl Frame {
    /// A frame of a crewshipd page; anything else is said to be no such page.
    fn from_scrape(s: &Scrape, url: &Url) -> Result<Frame> {
        if s.value("crewshipd_build_info").is_none() {
            return Err(CliError::Failed(format!(
                "{url} answers, but not with crewshipd's /metrics (there is no crewshipd_build_info): is --url a \
                 crewshipd?"
            )));
        }
        let run_events = s.by("crewshipd_agent_run_events_total", "event");
        Ok(Frame {
            url: url.to_string(),
            scraped_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            version: s.label("crewshipd_build_info", "version").map(str::to_string),
            hostname: s.label("crewshipd_uptime_seconds", "hostname").map(str::to_string),
            uptime_seconds: s.value("crewshipd_uptime_seconds"),
            tasks: s.value("crewshipd_goroutines"),
            ws_connections: s.value("crewshipd_ws_connections"),
            memory_alloc_bytes: s.value("crewshipd_memory_alloc_bytes"),
            memory_sys_bytes: s.value("crewshipd_memory_sys_bytes"),
            resident_memory_bytes: s.value("process_resident_memory_bytes"),
            assignments: s.by("crewshipd_assignments", "status"),
            queue_depth: s.value("crewshipd_assignment_queue_depth"),
            queue_crews: s.value("crewshipd_assignment_queue_crews"),
            queue_depth_max: s.value("crewshipd_assignment_queue_depth_max"),
            pipeline_runs: s.by("crewshipd_pipeline_runs", "status"),
            run_events,
            runs_started_per_min: None,
            runs_failed_per_min: None,
            spend_usd_per_hour: None,
            failure_ratio: None,
            failure_ratio_window_seconds: None,
            llm_calls: s.by("crewshipd_llm_calls_total", "provider"),
            llm_cost_usd: s.by("crewshipd_llm_cost_usd_total", "provider"),
            containers_tracked: s.value("crewshipd_containers_tracked"),
            containers_reporting: s.value("crewshipd_containers_reporting"),
            snapshot_age_seconds: s.value("crewshipd_metrics_snapshot_age_seconds"),
            collectors_down: s
                .by("crewshipd_metrics_collector_up", "collector")
                .into_iter()
                .filter(|(_, up)| *up < 1.0)
                .map(|(c, _)| c)
                .collect(),
        })
    }

    /// Fills the rates and the windowed ratio from what earlier frames saw.
    fn windowed(&mut self, history: &mut History) {
        let now = Totals {
            at: Instant::now(),
            started: of(&self.run_events, "started").unwrap_or(0.0),
            failed: of(&self.run_events, "failed").unwrap_or(0.0),
            spend_usd: self.llm_cost_usd.iter().map(|(_, v)| v).sum(),
        };
        history.push(now);
        if let Some(then) = history.since(RATE_WINDOW) {
            let secs = now.at.duration_since(then.at).as_secs_f64();
            self.runs_started_per_min = Some((now.started - then.started) * 60.0 / secs);
            self.runs_failed_per_min = Some((now.failed - then.failed) * 60.0 / secs);
            self.spend_usd_per_hour = Some((now.spend_usd - then.spend_usd) * 3600.0 / secs);
        }
        if let Some(then) = history.since(RATIO_WINDOW) {
            self.failure_ratio_window_seconds = Some(now.at.duration_since(then.at).as_secs_f64().round());
            let started = now.started - then.started;
            self.failure_ratio = (started > 0.0).then(|| (now.failed - then.failed) / started);
        }
    }

    fn render(&self) -> String {
        let mut rows = vec![
            (
                "crewshipd",
                format!("{} on {}  {}  at {}", text(&self.version), text(&self.hostname), self.url, self.scraped_at),
            ),
            (
                "process",
                format!(
                    "up {}  tasks {}  ws connections {}",
                    self.uptime_seconds
                        .map_or("?".into(), |s| humantime::format_duration(Duration::from_secs(s as u64)).to_string()),
                    num(self.tasks),
                    num(self.ws_connections),
                ),
            ),
            (
                "memory",
                format!(
                    "allocated {}  mapped {}  resident {}",
                    bytes(self.memory_alloc_bytes),
                    bytes(self.memory_sys_bytes),
                    bytes(self.resident_memory_bytes),
                ),
            ),
            ("assignments", pairs(&self.assignments)),
            (
                "queue",
                format!(
                    "depth {}  crews {}  max {}",
                    num(self.queue_depth),
                    num(self.queue_crews),
                    num(self.queue_depth_max)
                ),
            ),
            ("pipeline runs", pairs(&self.pipeline_runs)),
            ("run events", pairs(&self.run_events)),
            ("rates", self.rates()),
        ];
        // The rate card's providers are on the page at zero from the start:
        // only those with calls are worth a line.
        let called: Vec<&(String, f64)> = self.llm_calls.iter().filter(|(_, calls)| *calls > 0.0).collect();
        if called.is_empty() {
            rows.push(("llm", "no calls yet".into()));
        }
        for (i, (provider, calls)) in called.into_iter().enumerate() {
            let cost = of(&self.llm_cost_usd, provider).map_or("?".into(), |c| format!("${c:.4}"));
            rows.push((
                if i == 0 { "llm" } else { "" },
                format!("{provider}  calls {}  spend {cost}", num(Some(*calls))),
            ));
        }
        rows.push((
            "containers",
            format!("tracked {}  reporting {}", num(self.containers_tracked), num(self.containers_reporting)),
        ));
        let collectors = if self.collectors_down.is_empty() {
            "all up".into()
        } else {
            format!("down: {}", self.collectors_down.join(", "))
        };
        rows.push((
            "snapshot",
            format!("age {}s  collectors {collectors}", num(self.snapshot_age_seconds.map(|a| a.round()))),
        ));
        let width = rows.iter().map(|(label, _)| label.len()).max().unwrap_or(0);
        rows.iter().map(|(label, value)| format!("{label:<width$}  {value}")).collect::<Vec<_>>().join("\n")
    }
}

impl Frame {
    fn rates(&self) -> String {
        let (Some(started), Some(failed), Some(spend)) =
            (self.runs_started_per_min, self.runs_failed_per_min, self.spend_usd_per_hour)
        else {
            return "from the next frame on".into();
        };
        let window = self.failure_ratio_window_seconds.unwrap_or(0.0);
        let ratio = self.failure_ratio.map_or("-".into(), |r| format!("{:.1}%", r * 100.0));
        let over = humantime::format_duration(Duration::from_secs(window as u64));
        format!(
            "started {started:.1}/min  failed {failed:.1}/min  spend ${spend:.4}/h  failure ratio {ratio} over {over}"
        )
    }
}

fn text(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("?")
}

/// Counts print as whole numbers; anything else as it is.
fn num(v: Option<f64>) -> String {
    match v {
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v:.0}"),
        Some(v) => v.to_string(),
        None => "?".into(),
    }
}

fn pairs(pairs: &[(String, f64)]) -> String {
    pairs.iter().map(|(k, v)| format!("{k} {}", num(Some(*v)))).collect::<Vec<_>>().join("  ")
}

fn bytes(v: Option<f64>) -> String {
    let Some(mut v) = v else { return "?".into() };
    for unit in ["B", "KiB", "MiB", "GiB"] {
        if v < 1024.0 {
            return format!("{v:.1} {unit}");
        }
        v /= 1024.0;
    }
    format!("{v:.1} TiB")
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = "\
crewshipd_uptime_seconds{hostname=\"vm\"} 3725.5
crewshipd_build_info{hostname=\"vm\",revision=\"abc\",version=\"0.1.0\"} 1
crewshipd_assignments{hostname=\"vm\",status=\"queued\"} 2
crewshipd_assignments{hostname=\"vm\",status=\"completed\"} 7
crewshipd_agent_run_events_total{event=\"started\",hostname=\"vm\"} 8
crewshipd_agent_run_events_total{event=\"failed\",hostname=\"vm\"} 2
crewshipd_llm_calls_total{hostname=\"vm\",provider=\"anthropic\"} 3
crewshipd_llm_cost_usd_total{hostname=\"vm\",provider=\"anthropic\"} 0.0315
crewshipd_metrics_collector_up{collector=\"llm\",hostname=\"vm\"} 0
";

    #[test]
    fn a_frame_shows_the_numbers_that_matter() {
        let url = Url::parse("http://h:1/metrics").unwrap();
        let mut history = History::default();
        let mut frame = Frame::from_scrape(&Scrape::parse(PAGE), &url).unwrap();
        frame.windowed(&mut history);
        assert_eq!(frame.failure_ratio, None, "one frame has no window");
        assert!(frame.render().contains("rates          from the next frame on"), "{}", frame.render());
        // Thirty seconds on: 4 more runs started, 1 more failed.
        let first = *history.0.back().unwrap();
        history.0.back_mut().unwrap().at = first.at - Duration::from_secs(30);
        let later = PAGE
            .replace("event=\"started\",hostname=\"vm\"} 8", "event=\"started\",hostname=\"vm\"} 12")
            .replace("event=\"failed\",hostname=\"vm\"} 2", "event=\"failed\",hostname=\"vm\"} 3");
        let mut frame = Frame::from_scrape(&Scrape::parse(&later), &url).unwrap();
        frame.windowed(&mut history);
        assert_eq!(frame.failure_ratio, Some(0.25));
        let text = frame.render();
        for expected in [
            "0.1.0 on vm",
            "up 1h 2m 5s",
            "queued 2  completed 7",
            "started 8.0/min  failed 2.0/min  spend $0.0000/h  failure ratio 25.0% over 30s",
            "anthropic  calls 3  spend $0.0315",
            "collectors down: llm",
            "memory         allocated ?",
        ] {
            assert!(text.contains(expected), "{expected:?} in\n{text}");
        }
        let json = serde_json::to_value(&frame).unwrap();
        assert_eq!(json["assignments"]["completed"], 7.0);
        assert_eq!(json["llm_cost_usd"]["anthropic"], 0.0315);
        assert!(!text.contains('\x1b'));
    }

    #[test]
    fn a_page_that_is_not_crewshipds_is_refused() {
        let url = Url::parse("http://h:1/metrics").unwrap();
        let e = Frame::from_scrape(&Scrape::parse("node_load1 0.5\n"), &url).err().unwrap();
        assert!(e.to_string().contains("not with crewshipd's /metrics"), "{e}");
    }

    #[test]
    fn sizes_read_in_binary_units() {
        assert_eq!(bytes(Some(2_351_944.0)), "2.2 MiB");
        assert_eq!(bytes(Some(10.0)), "10.0 B");
    }
}

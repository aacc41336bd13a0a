//! The stats collector: every `CREWSHIP_STATS_INTERVAL` it asks the engine
//! for a one-shot stats reading of each tracked container, records the
//! sample in the registry and publishes a `container.sample` event.
//!
//! Each container is polled on its own task with a bounded wait, and a
//! container whose last poll has not finished is skipped, so one that
//! hangs never delays the others. A container that does not answer stays
//! tracked but stops reporting: that gap is what operators alert on.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::MissedTickBehavior;

use super::lifecycle::CrewContainers;
use super::stats::{self, CpuReading};
use crate::domain::event::{Event, EventKind};
use crate::domain::{DomainError, Result, time};

/// A running collector; `stop` ends it.
pub struct Collector {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Collector {
    /// Starts collecting. Its first round also finds the containers of
    /// live docker crews again (and repeats until the engine answers), so
    /// start-up never waits on the engine.
    pub fn spawn(containers: CrewContainers, interval: Duration) -> Collector {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(containers, interval, stopped));
        Collector { stop, task }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// How long one stats call may take: a few poll intervals, within sane
/// bounds (a healthy engine answers a one-shot call in milliseconds).
fn poll_bound(interval: Duration) -> Duration {
    (interval * 3).clamp(Duration::from_secs(1), Duration::from_secs(30))
}

type Polled = (String, String, Result<bollard::models::ContainerStatsResponse>);

/// Per-container memory of the collector between rounds.
#[derive(Default)]
struct Seen {
    /// The previous CPU reading, standing in for the precpu counters a
    /// one-shot reading lacks.
    cpu: HashMap<String, CpuReading>,
    /// Containers whose latest poll failed, so each change is logged once.
    failing: HashSet<String>,
}

impl Seen {
    fn forget_untracked(&mut self, tracked: &HashSet<&String>) {
        self.cpu.retain(|id, _| tracked.contains(id));
        self.failing.retain(|id| tracked.contains(id));
    }
}

fn record(containers: &CrewContainers, seen: &mut Seen, (id, crew, polled): Polled) {
    let stats = polled.and_then(|s| {
        if stats::is_running(&s) {
            Ok(s)
        } else {
            Err(DomainError::Unavailable(format!("container {id} is not running")))
        }
    });
    match stats {
        Ok(stats) => {
            let (sample, cpu) =
                stats::sample(&id, &crew, &stats, seen.cpu.get(&id).copied(), time::rfc3339(time::now_ms()));
            seen.cpu.insert(id.clone(), cpu);
            if seen.failing.remove(&id) {
                tracing::info!(container = id, crew, "container answers stats again");
            }
            containers.registry().record(sample.clone());
            containers.store().publish(Event::new(EventKind::ContainerSample, Some(crew), &sample));
        }
        Err(e) => {
            seen.cpu.remove(&id);
            if seen.failing.insert(id.clone()) {
                tracing::warn!(container = id, crew, error = %e, "container stopped answering stats");
            }
        }
    }
}

async fn run(containers: CrewContainers, interval: Duration, mut stop: watch::Receiver<bool>) {
    let bound = poll_bound(interval);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut adopted = false;
    let mut adopt_warned = false;
    let mut polls: JoinSet<Polled> = JoinSet::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut seen = Seen::default();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            Some(done) = polls.join_next() => match done {
                Ok(polled) => {
                    in_flight.remove(&polled.0);
                    record(&containers, &mut seen, polled);
                }
                Err(e) => tracing::error!(error = %e, "a stats poll task failed"),
            },
            _ = tick.tick() => {
                if !adopted {
                    match containers.adopt().await {
                        Ok(n) => {
                            adopted = true;
                            if n > 0 {
                                tracing::info!(containers = n, "crew containers found again and tracked");
                            }
                        }
                        Err(e) if !adopt_warned => {
                            adopt_warned = true;
                            tracing::warn!(error = %e, "cannot find crew containers yet; will keep trying");
                        }
                        Err(_) => {}
                    }
                }
                let tracked = containers.registry().list();
                seen.forget_untracked(&tracked.iter().map(|(id, _)| id).collect());
                for (id, crew) in tracked {
                    if !in_flight.insert(id.clone()) {
                        continue;
                    }
                    let engine = containers.engine().clone();
                    polls.spawn(async move {
                        let polled = match tokio::time::timeout(bound, engine.stats(&id)).await {
                            Ok(stats) => stats,
                            Err(_) => Err(DomainError::Unavailable(format!("no stats within {bound:?}"))),
                        };
                        (id, crew, polled)
                    });
                }
            }
        }
    }
    polls.abort_all();
}

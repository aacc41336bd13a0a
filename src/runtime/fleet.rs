//! This node in the fleet. It registers at start (its id is kept in the
//! data directory; each start is a new epoch, which fences whatever the
//! earlier ones claimed), renews its lease every heartbeat, and takes back
//! the runs of nodes whose lease expired. It never lets a lease it could
//! not renew run out under its agents: one heartbeat before the fleet may
//! take its runs back, it stops them itself and claims nothing until it
//! has registered again, so a recovered assignment never runs twice at
//! once. On SQLite the fleet is this one node.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::pipelines::Executor;
use super::recovery::{self, Whose};
use super::runner::{Runner, StopReason};
use crate::containers::Engine;
use crate::domain::Result;
use crate::store::Store;
use crate::store::nodes::{self, NodeRef, Registration};
use crate::sync::lock;

/// How this node takes part.
#[derive(Debug, Clone)]
pub struct Settings {
    pub registration: Registration,
    pub heartbeat: Duration,
    pub max_attempts: i64,
    /// How long an expired node whose runs were taken back stays listed.
    pub forget_after: Duration,
}

pub struct Membership {
    store: Store,
    settings: Settings,
    me: Mutex<NodeRef>,
    /// Set from the moment the node stops trusting its lease until it has
    /// registered again: it claims nothing meanwhile.
    fenced: AtomicBool,
    /// Work was put back in a queue here (taken back from a node): the
    /// dispatcher looks, as no event it waits for says so.
    requeued: tokio::sync::Notify,
}

impl Membership {
    /// Registers under a new epoch.
    pub async fn join(store: &Store, settings: Settings) -> Result<Membership> {
        let r = settings.registration.clone();
        let epoch = store.write(move |tx| nodes::register(tx, &r)).await?;
        let me = NodeRef { id: settings.registration.id.clone(), epoch };
        tracing::info!(node = me.id, epoch, "joined the fleet");
        Ok(Membership {
            store: store.clone(),
            settings,
            me: Mutex::new(me),
            fenced: AtomicBool::new(false),
            requeued: tokio::sync::Notify::new(),
        })
    }

    /// The node and the epoch it claims under now.
    pub fn me(&self) -> NodeRef {
        lock(&self.me).clone()
    }

    /// Resolves when work was put back in a queue by this node.
    pub async fn requeued(&self) {
        self.requeued.notified().await
    }

    /// Whether the node may claim work now.
    pub fn may_claim(&self) -> bool {
        !self.fenced.load(Ordering::SeqCst)
    }

    fn lease(&self) -> Duration {
        Duration::from_millis(self.settings.registration.lease_ms.unsigned_abs())
    }

    /// Stops this node's runs without recording their ends (the fleet
    /// takes them back), and claims nothing until it registers again.
    async fn fence(&self, runner: &Runner, why: &str) {
        if !self.fenced.swap(true, Ordering::SeqCst) {
            tracing::error!(node = self.me().id, why, "stopping this node's runs; it registers again when it can");
        }
        runner.stop_all(StopReason::Fenced).await;
    }

    /// Registers under the next epoch and takes back what the earlier
    /// ones left running; then claims again.
    async fn rejoin(&self, engine: &Engine, executor: &Arc<Executor>) -> Result<()> {
        let r = self.settings.registration.clone();
        let id = r.id.clone();
        let epoch = self.store.write(move |tx| nodes::register(tx, &r)).await?;
        let me = NodeRef { id, epoch };
        *lock(&self.me) = me.clone();
        let recovered = recovery::recover(
            &self.store,
            engine,
            executor,
            Whose::OwnEarlierEpochs,
            &me,
            self.settings.max_attempts,
            self.settings.forget_after,
        )
        .await?;
        tracing::warn!(node = me.id, epoch, ?recovered, "registered again; took back this node's earlier runs");
        self.fenced.store(false, Ordering::SeqCst);
        // Claiming again, and maybe with work put back.
        self.requeued.notify_one();
        Ok(())
    }

    /// Renews the lease every heartbeat and takes back the runs of expired
    /// nodes, until `stop`.
    pub async fn run(
        self: Arc<Self>,
        runner: Arc<Runner>,
        executor: Arc<Executor>,
        engine: Engine,
        mut stop: watch::Receiver<bool>,
    ) {
        let (heartbeat, lease) = (self.settings.heartbeat, self.lease());
        // When the last renewal that succeeded was sent: the lease ends no
        // earlier than that plus its length, by any clock that keeps time.
        let mut renewed = Instant::now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(heartbeat) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let sent = Instant::now();
            if self.fenced.load(Ordering::SeqCst) {
                match self.rejoin(&engine, &executor).await {
                    Ok(()) => renewed = sent,
                    Err(e) => tracing::warn!(error = %e, "cannot register again yet"),
                }
            } else {
                let (me, lease_ms) = (self.me(), self.settings.registration.lease_ms);
                let renew = self.store.write(move |tx| nodes::renew(tx, &me, lease_ms));
                match tokio::time::timeout(heartbeat, renew).await {
                    Ok(Ok(true)) => renewed = sent,
                    Ok(Ok(false)) => self.fence(&runner, "the fleet says this node's lease expired").await,
                    Ok(Err(e)) => tracing::warn!(error = %e, "cannot renew this node's lease"),
                    Err(_) => tracing::warn!("renewing this node's lease takes longer than a heartbeat"),
                }
                // The next renewal would come too late to trust.
                if !self.fenced.load(Ordering::SeqCst) && renewed.elapsed() + heartbeat * 2 >= lease {
                    self.fence(&runner, "this node could not renew its lease").await;
                }
            }
            if self.may_claim() {
                let me = self.me();
                let (max, forget) = (self.settings.max_attempts, self.settings.forget_after);
                match recovery::recover(&self.store, &engine, &executor, Whose::Expired, &me, max, forget).await {
                    Ok(r) if r != recovery::Recovered::default() => {
                        tracing::warn!(recovered = ?r, "took back the runs of expired nodes");
                        self.requeued.notify_one();
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "cannot take back the runs of expired nodes yet"),
                }
            }
        }
    }
}

/// This node's id: made once and kept in the data directory, so a restart
/// is the same node under a new epoch (and can end its own leftovers at
/// once, rather than waiting for its old lease to expire).
pub fn node_id(data_dir: &std::path::Path) -> std::io::Result<String> {
    let path = data_dir.join("node-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("node-{}", &crate::domain::ids::new_trace_id()[..12]);
    std::fs::write(&path, format!("{id}\n"))?;
    Ok(id)
}

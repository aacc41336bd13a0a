//! This node's membership of a fleet: how often it renews its lease, and
//! for how long a lease holds (after which the fleet takes its runs back).

use std::time::Duration;

use super::source::{ConfigError, Setting, Shown, Source, positive_duration};

pub const NODE_HEARTBEAT: Setting = Setting {
    var: "CREWSHIP_NODE_HEARTBEAT",
    flag: None,
    default: Shown::Value("5s"),
    help: "how often this node renews its lease in the fleet's database",
};
pub const NODE_LEASE: Setting = Setting {
    var: "CREWSHIP_NODE_LEASE",
    flag: None,
    default: Shown::Value("30s"),
    help: "how long a lease holds: a node silent for longer is expired, and a live node takes back its runs \
           (at least three heartbeats)",
};

pub const NODE_FORGET_AFTER: Setting = Setting {
    var: "CREWSHIP_NODE_FORGET_AFTER",
    flag: None,
    default: Shown::Value("24h"),
    help: "an expired node whose runs were taken back is listed this long, then forgotten",
};

#[derive(Debug, Clone, Copy)]
pub struct Fleet {
    pub heartbeat: Duration,
    pub lease: Duration,
    pub forget_after: Duration,
}

impl Fleet {
    pub(super) fn read(src: &Source<'_>) -> Result<Fleet, ConfigError> {
        let heartbeat = src.get(&NODE_HEARTBEAT, positive_duration)?;
        // A node stops its runs one heartbeat before its lease can end, so
        // a lease needs room for a missed renewal or two.
        let lease = src.get(&NODE_LEASE, |s| {
            let lease = positive_duration(s)?;
            if lease < heartbeat * 3 {
                return Err(format!("must be at least three heartbeats ({:?})", heartbeat * 3));
            }
            Ok(lease)
        })?;
        Ok(Fleet { heartbeat, lease, forget_after: src.get(&NODE_FORGET_AFTER, positive_duration)? })
    }
}

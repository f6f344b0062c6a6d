//! How many replicas acknowledge a shard's writes (Redis `WAIT`), and the errors when
//! they do not.
//!
//! A write waits for `replicas` acknowledgements ([`Replication`]). In
//! [`WaitMode::Connected`] (the default) it waits for as many as the primary has online
//! right now, up to that number: the shard keeps taking writes while it has no replica
//! (just after a fail-over, before the old primary rejoins as a replica), and such a
//! write survives a restart of its primary (with AOF) but not its loss. In
//! [`WaitMode::Strict`] a write always waits for `replicas`: no write is acknowledged
//! that a single Redis's loss could take, and the shard refuses writes while it has too
//! few replicas. The count of replicas online is read from `INFO replication` on every
//! new connection (after a fail-over the new primary may have none) and by each shard
//! check (every second in the service).
//!
//! In `Connected` mode a Sentinel shard takes fewer acknowledgements than asked for only
//! while the Sentinels see its master settled (up, no fail-over under way; read with
//! the count): a primary that restarted during a fail-over is about to become a replica
//! and drop what it takes, so until then writes wait for every replica asked for.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyperverse_core::Error;
use redis::{Cmd, Value};
use serde::Deserialize;

use super::link::ShardLink;

/// Whether a write waits for the replicas there are, or for the number asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WaitMode {
    /// Wait for the replicas online right now, up to `replicas`.
    #[default]
    Connected,
    /// Always wait for `replicas`; refuse writes while fewer acknowledge.
    Strict,
}

/// How many replicas must acknowledge a write before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replication {
    /// Replica acknowledgements each write waits for (0: none, answer at once).
    pub replicas: usize,
    /// How long a write waits for them.
    pub timeout: Duration,
    /// Whether fewer may do while fewer are online.
    pub mode: WaitMode,
}

impl Replication {
    /// Answer writes as soon as the primary applied them.
    pub const NONE: Replication = Replication {
        replicas: 0,
        timeout: Duration::ZERO,
        mode: WaitMode::Connected,
    };
}

/// One shard's replication policy and its count of replicas online.
#[derive(Debug)]
pub struct Acks {
    policy: Replication,
    /// Replicas online at the last check; `usize::MAX` until one is made.
    online: AtomicUsize,
    /// Whether the Sentinels saw the master settled at the last check (always, for a
    /// shard without Sentinels): fewer acknowledgements may do only then.
    settled: AtomicBool,
}

/// A `WAIT` to send after writes, and how many acknowledgements it asks for.
#[derive(Debug)]
pub(crate) struct Wait {
    pub(crate) cmd: Cmd,
    wanted: usize,
    timeout: Duration,
}

impl Acks {
    pub(crate) fn new(policy: Replication) -> Self {
        Self {
            policy,
            online: AtomicUsize::new(usize::MAX),
            settled: AtomicBool::new(true),
        }
    }

    /// Whether the policy asks for any acknowledgement at all.
    pub(crate) fn wanted_at_all(&self) -> bool {
        self.policy.replicas > 0
    }

    /// Records the replicas online, from `INFO replication`'s text.
    pub(crate) fn observe(&self, info: &str) {
        self.online.store(online_replicas(info), Ordering::Relaxed);
    }

    /// Records whether the Sentinels see the master settled (see the module doc).
    pub(crate) fn set_settled(&self, settled: bool) {
        self.settled.store(settled, Ordering::Relaxed);
    }

    /// Forgets the count (a new connection: maybe another server). Until the next
    /// count, writes wait for every replica asked for.
    pub(crate) fn forget(&self) {
        self.online.store(usize::MAX, Ordering::Relaxed);
    }

    /// The replicas online at the last check (`None` before one).
    pub(crate) fn online(&self) -> Option<usize> {
        match self.online.load(Ordering::Relaxed) {
            usize::MAX => None,
            n => Some(n),
        }
    }

    /// The `WAIT` to send after writes now, if any.
    pub(crate) fn wait(&self) -> Option<Wait> {
        let wanted = match self.policy.mode {
            WaitMode::Strict => self.policy.replicas,
            WaitMode::Connected if !self.settled.load(Ordering::Relaxed) => self.policy.replicas,
            WaitMode::Connected => self
                .policy
                .replicas
                .min(self.online.load(Ordering::Relaxed)),
        };
        if wanted == 0 {
            return None;
        }
        let mut cmd = redis::cmd("WAIT");
        cmd.arg(wanted)
            .arg(self.policy.timeout.as_millis().max(1) as u64);
        Some(Wait {
            cmd,
            wanted,
            timeout: self.policy.timeout,
        })
    }
}

impl Wait {
    /// The error for the writes the `WAIT` covered when it answered `acked` and that is
    /// short; `None` when they are acknowledged.
    pub(crate) fn shortfall(&self, link: &ShardLink, acked: &Value) -> Option<Error> {
        let acked = match acked {
            Value::Int(n) => *n,
            other => {
                return Some(Error::internal(format!(
                    "shard {}: WAIT answered {other:?}",
                    link.url()
                )));
            }
        };
        if usize::try_from(acked).is_ok_and(|acked| acked >= self.wanted) {
            return None;
        }
        Some(link.unavailable(format!(
            "the write reached {acked} of the {} replica(s) it waits for within {:?}; it is \
             applied on the primary but not acknowledged (a fail-over could lose it)",
            self.wanted, self.timeout
        )))
    }
}

/// Replicas `online` in an `INFO replication` text (`slaveN:…,state=online,…`).
fn online_replicas(info: &str) -> usize {
    info.lines()
        .filter(|line| {
            line.strip_prefix("slave")
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit()))
                && line.contains("state=online")
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:2\r\n\
        slave0:ip=127.0.0.1,port=7001,state=online,offset=10,lag=0\r\n\
        slave1:ip=127.0.0.1,port=7002,state=wait_bgsave,offset=0,lag=0\r\n\
        slave_read_repl_offset:10\r\n";

    #[test]
    fn only_online_replicas_count() {
        assert_eq!(online_replicas(INFO), 1);
        assert_eq!(online_replicas("role:master\r\nconnected_slaves:0\r\n"), 0);
    }

    fn acks(replicas: usize, mode: WaitMode) -> Acks {
        Acks::new(Replication {
            replicas,
            timeout: Duration::from_millis(100),
            mode,
        })
    }

    #[test]
    fn connected_mode_waits_for_the_replicas_there_are() {
        let connected = acks(2, WaitMode::Connected);
        assert_eq!(connected.wait().map(|w| w.wanted), Some(2), "unknown: all");
        connected.observe(INFO);
        assert_eq!(connected.online(), Some(1));
        assert_eq!(connected.wait().map(|w| w.wanted), Some(1));
        connected.observe("connected_slaves:0");
        assert!(connected.wait().is_none(), "none online: answer at once");

        connected.set_settled(false);
        assert_eq!(
            connected.wait().map(|w| w.wanted),
            Some(2),
            "a master the Sentinels do not see settled: every replica asked for"
        );
        connected.set_settled(true);
        assert!(connected.wait().is_none());

        let strict = acks(2, WaitMode::Strict);
        strict.observe("connected_slaves:0");
        assert_eq!(strict.wait().map(|w| w.wanted), Some(2));
        assert!(acks(0, WaitMode::Strict).wait().is_none());
    }
}

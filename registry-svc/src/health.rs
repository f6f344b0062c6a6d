//! What registry-svc's `/readyz` answers: ready while every shard is served — reachable
//! and carrying the hyperverse's identity (always, for the in-memory backend) — until
//! it starts stopping. A shard lost, foreign or unreachable makes it not ready, naming
//! the shard: its points answer 503 until an operator acts ([`crate::backend::redis`]).
//! `/livez` answers whenever the process does.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::redis::{RedisRegistry, ShardState};

/// The service's readiness, shared with the metrics listener's thread.
#[derive(Debug)]
pub struct Health {
    stopping: AtomicBool,
    shards: Option<RedisRegistry>,
}

impl Health {
    /// The readiness of a service over `shards` (`None`: in memory).
    pub fn new(shards: Option<RedisRegistry>) -> Self {
        Self {
            stopping: AtomicBool::new(false),
            shards,
        }
    }

    /// The service stops: not ready any more.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// `Ok` when ready; why not otherwise.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            return Err("stopping".into());
        }
        let Some(redis) = &self.shards else {
            return Ok(());
        };
        let unserved: Vec<String> = redis
            .shards()
            .iter()
            .filter(|s| s.state() != ShardState::Serving)
            .map(|s| format!("{} ({})", s.url(), s.state().label()))
            .collect();
        if unserved.is_empty() {
            Ok(())
        } else {
            Err(format!("shards not served: {}", unserved.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_memory_it_is_ready_until_it_stops() {
        let health = Health::new(None);
        assert_eq!(health.readiness(), Ok(()));
        health.stopping();
        assert_eq!(health.readiness(), Err("stopping".into()));
    }
}

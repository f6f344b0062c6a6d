//! What a star-node's `/readyz` answers: ready once its stars are registered and its
//! first directory listing is in, while the registry answered the last time it was
//! asked (a directory refresh or a heartbeat), and until it starts stopping — `503` from
//! the first moment of SIGTERM, before the drain, so a load balancer stops sending work
//! while the waves in flight finish. `/livez` answers whenever the process does.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// The node's readiness, shared with the metrics listener's thread.
#[derive(Debug, Default)]
pub struct Health {
    started: AtomicBool,
    stopping: AtomicBool,
    /// Why the registry's last answer was no answer; `None` while it answers.
    registry: Mutex<Option<String>>,
}

impl Health {
    /// The stars are registered and the directory listed.
    pub fn started(&self) {
        self.started.store(true, Ordering::Release);
    }

    /// The node stops: not ready any more.
    pub fn stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// What the registry answered the last call that tells (directory, heartbeat).
    pub fn registry<T>(&self, answer: &hyperverse_core::Result<T>) {
        let why = answer.as_ref().err().map(ToString::to_string);
        *self.registry.lock().unwrap_or_else(|e| e.into_inner()) = why;
    }

    /// `Ok` when ready; why not otherwise.
    pub fn readiness(&self) -> Result<(), String> {
        if self.stopping.load(Ordering::Acquire) {
            return Err("stopping: draining the waves in flight".into());
        }
        if !self.started.load(Ordering::Acquire) {
            return Err("starting: registering the stars".into());
        }
        match &*self.registry.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(format!("the registry does not answer: {why}")),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperverse_core::Error;

    #[test]
    fn ready_between_start_and_stop_while_the_registry_answers() {
        let health = Health::default();
        assert!(health.readiness().unwrap_err().starts_with("starting"));
        health.started();
        assert_eq!(health.readiness(), Ok(()));
        health.registry::<()>(&Err(Error::Unavailable("shard down".into())));
        let why = health.readiness().unwrap_err();
        assert!(
            why.contains("registry") && why.contains("shard down"),
            "{why}"
        );
        health.registry(&Ok(()));
        assert_eq!(health.readiness(), Ok(()));
        health.stopping();
        assert!(health.readiness().unwrap_err().starts_with("stopping"));
        health.registry(&Ok(()));
        assert!(health.readiness().is_err(), "stopping is for good");
    }
}

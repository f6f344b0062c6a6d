//! A whole star-node: binds the gate and the metrics listener (`/metrics`, `/livez`,
//! `/readyz`: [`crate::health`]), starts the [`Machine`] and its gate, and stops them in
//! order. The binary is a thin shell around [`Node`]; tests
//! start nodes in-process the same way.

use hyperverse_core::wire::GatePublicKey;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use hyperverse_core::driver::Hyperverse;
use hyperverse_core::{Error, Result};

use crate::config::Settings;
use crate::gate;
use crate::health::Health;
use crate::machine::Machine;
use crate::metrics::Metrics;

/// A running star-node.
#[derive(Debug)]
pub struct Node {
    /// The machine.
    pub machine: Rc<Machine>,
    /// Where the gate listens.
    pub gate: SocketAddr,
    /// Where `/metrics` is served.
    pub metrics: SocketAddr,
}

impl Node {
    /// Binds the gate and metrics addresses of `settings` (port 0 picks a free port),
    /// starts the machine with `hyperverse` and serves. Must run inside an actix system.
    pub async fn start(settings: Settings, hyperverse: Arc<dyn Hyperverse>) -> Result<Node> {
        Self::start_with_metrics(settings, hyperverse, Arc::new(Metrics::new())).await
    }

    /// Like [`Node::start`], serving `metrics` (in which the hyperverse's drivers may
    /// have registered collectors of their own).
    pub async fn start_with_metrics(
        settings: Settings,
        hyperverse: Arc<dyn Hyperverse>,
        metrics: Arc<Metrics>,
    ) -> Result<Node> {
        let bind = |what: &str, addr: &str, e: std::io::Error| {
            Error::Unavailable(format!("cannot listen on {what} address {addr}: {e}"))
        };
        let gate_listener = tokio::net::TcpListener::bind(&settings.gate)
            .await
            .map_err(|e| bind("gate", &settings.gate, e))?;
        let gate = gate_listener
            .local_addr()
            .map_err(|e| bind("gate", &settings.gate, e))?;
        let metrics_listener = std::net::TcpListener::bind(&settings.metrics)
            .map_err(|e| bind("metrics", &settings.metrics, e))?;
        let metrics_addr = metrics_listener
            .local_addr()
            .map_err(|e| bind("metrics", &settings.metrics, e))?;
        let rendered = metrics.clone();
        let health = Arc::new(Health::default());
        let ready = health.clone();
        hyperverse_core::metrics_http::serve(
            metrics_listener,
            Arc::new(move || rendered.render()),
            Arc::new(move || ready.readiness()),
        )
        .map_err(|e| bind("metrics", &settings.metrics, e))?;
        let advertise = if settings.advertise.is_empty() {
            gate.to_string()
        } else {
            settings.advertise.clone()
        };
        let machine = Machine::start(settings, advertise, hyperverse, metrics, health).await?;
        actix::spawn(gate::serve(gate_listener, machine.clone()));
        machine.health.started();
        Ok(Node {
            machine,
            gate,
            metrics: metrics_addr,
        })
    }

    /// The gate's public key, which clients pin.
    pub fn gate_key(&self) -> GatePublicKey {
        let key = self.machine.sealing.gate.as_ref();
        *key.expect("a gate always has a key").public()
    }

    /// Client sessions the gate holds now.
    pub fn sessions(&self) -> usize {
        self.machine.slots.clients()
    }

    /// Stops cleanly: the gate stops accepting and sessions stop reading, waves in
    /// flight are drained (up to `drain_timeout_ms`), stateful particles save their
    /// state, then the stars leave the directory. Returns how many waves were still in
    /// flight when draining gave up.
    pub async fn stop(&self) -> usize {
        self.machine.health.stopping();
        self.machine.shutdown.cancel();
        let limit = Settings::ms(self.machine.settings.drain_timeout_ms);
        let left = self.machine.drain(limit).await;
        let saved = self.machine.save_all().await;
        if saved > 0 {
            tracing::info!(saved, "saved the state of stateful particles");
        }
        self.machine.deregister(limit).await;
        left
    }
}

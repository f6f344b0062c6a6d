//! Clients that go on when the process they talk to dies: a gate connection that moves
//! to another gate ([`FailoverGate`]), and a pair of registry-svc connections used by
//! whichever is up ([`FailoverRegistry`]). What the `chaos` scenario's users are.
//!
//! A [`GateClient`] never reconnects: once its gate is gone every call fails at once
//! (`503`, connection lost). A [`FailoverGate`] then dials the *next* gate of its list
//! (then the others, its own last), so a client whose gate died goes on through another
//! one; it stays there. When no gate answers it fails requests at once for
//! [`RETRY_PAUSE`] before dialling again, so a dead cluster costs failed requests, not
//! hung ones. A request that was in flight on a lost connection is never resent (it may
//! have been applied): it fails, and the caller counts it.

use std::sync::Arc;
use std::time::Duration;

use hyperverse_core::registry::client::RegistryClient;
use star_node::client::{GateClient, GateClientConfig};
use tokio::sync::Mutex;
use tokio::time::Instant;

/// How long a client that reached no gate fails requests at once before dialling again.
pub const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// How long dialling one gate may take (on loopback a dead gate refuses at once).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A gate connection that moves to another gate when its own is lost.
#[derive(Debug)]
pub struct FailoverGate {
    gates: Arc<[String]>,
    token: String,
    config: GateClientConfig,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// The gate dialled last (the one `client` is on).
    gate: usize,
    client: Option<GateClient>,
    /// When dialling every gate last failed.
    failed_at: Option<Instant>,
}

impl FailoverGate {
    /// A client of `gates` that starts on gate `home` (not dialled yet).
    pub fn new(gates: Arc<[String]>, home: usize, token: &str, config: GateClientConfig) -> Self {
        FailoverGate {
            state: Mutex::new(State {
                gate: home % gates.len().max(1),
                client: None,
                failed_at: None,
            }),
            gates,
            token: token.into(),
            config: GateClientConfig {
                connect_timeout: CONNECT_TIMEOUT,
                ..config
            },
        }
    }

    /// The connection to use now: the current one while it is up, else one to the next
    /// gate that answers. Fails (with why) when none does.
    pub async fn client(&self) -> Result<GateClient, String> {
        let mut state = self.state.lock().await;
        if let Some(client) = state.client.as_ref().filter(|c| c.is_connected()) {
            return Ok(client.clone());
        }
        if let Some(at) = state.failed_at
            && at.elapsed() < RETRY_PAUSE
        {
            return Err("no gate reachable".into());
        }
        let n = self.gates.len();
        // A client whose gate died tries the next one first.
        let first = if state.client.is_some() {
            state.gate + 1
        } else {
            state.gate
        };
        let mut why = Vec::new();
        for k in 0..n {
            let i = (first + k) % n;
            let addr = &self.gates[i];
            match GateClient::connect(addr, Some(&self.token), self.config.clone()).await {
                Ok(client) => {
                    *state = State {
                        gate: i,
                        client: Some(client.clone()),
                        failed_at: None,
                    };
                    return Ok(client);
                }
                Err(e) => why.push(format!("{addr}: {e}")),
            }
        }
        state.client = None;
        state.failed_at = Some(Instant::now());
        Err(format!("no gate reachable ({})", why.join("; ")))
    }

    /// How many gates it knows.
    pub fn gates_len(&self) -> usize {
        self.gates.len()
    }
}

/// Connections to every registry-svc; each call goes to the preferred one if it is up,
/// else to one that is.
#[derive(Debug, Clone)]
pub struct FailoverRegistry {
    clients: Vec<RegistryClient>,
}

impl FailoverRegistry {
    /// Over `clients` (at least one).
    pub fn new(clients: Vec<RegistryClient>) -> Self {
        FailoverRegistry { clients }
    }

    /// The client for a call that prefers registry-svc `preferred` (modulo their
    /// number): it, if its connection is up; else the first that is; else it anyway (its
    /// call waits for the reconnection, within its timeout).
    pub fn pick(&self, preferred: usize) -> Option<&RegistryClient> {
        let n = self.clients.len();
        if n == 0 {
            return None;
        }
        (0..n)
            .map(|k| &self.clients[(preferred + k) % n])
            .find(|c| c.is_connected())
            .or_else(|| self.clients.get(preferred % n))
    }
}

//! The `wasm` scenario: pings to mechtrons, particles run as WebAssembly guests (the
//! ABI is docs/wasm-abi.md). The project's example guests are published as artifacts
//! (`localhost:wasm:echo`, `localhost:wasm:counter`) and `--particles` mechtrons are
//! created from them, half each:
//!
//! - echo mechtrons `localhost:wasm:e<i>` get `Cmd<Bounce>`-style pings (method
//!   [`ECHO_METHOD`]); the body must come back unchanged;
//! - counter mechtrons `localhost:wasm:c<i>` get `Ext<Count>`; each answers its running
//!   count. Before and after the run the harness reads every counter's state
//!   (`Cmd<Read>`, answered by the host: `calls` is the number of successful calls),
//!   and each must have grown by exactly the counts it answered.
//!
//! A cluster without mechtrons (no Mechtron driver, or a gate that does not know
//! `publish`) stops the scenario with [`Error::Unsupported`] (and `mixed` leaves its wasm
//! part out).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use hyperverse_core::particle::PropertyMod;
use hyperverse_core::registry::{Strategy, content_hash};
use hyperverse_core::wave::{CmdMethod, Method, Substance};
use hyperverse_core::{Kind, Point};
use star_node::client::GateClient;

use super::{Check, Op, SETUP_IN_FLIGHT, Setup, failed, ping};
use crate::error::{Error, Result, cluster};
use crate::record::Outcome;

/// The echo guest (wasm text; an artifact may hold text or binary).
pub const ECHO_GUEST: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../drivers/guests/echo.wat"
));
/// The counter guest.
pub const COUNTER_GUEST: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../drivers/guests/counter.wat"
));

/// The method echo mechtrons get (the guest answers any method with the body).
pub const ECHO_METHOD: &str = "Echo";
/// The method counter mechtrons get.
pub const COUNT_METHOD: &str = "Count";

/// Where the scenario's artifacts and mechtrons live.
pub const PARENT: &str = "localhost:wasm";

/// Makes sure `localhost:wasm` exists and the guest `name` is published there from
/// `module` (wasm text or binary); returns the artifact's point.
pub async fn publish(setup: &Setup<'_>, name: &str, module: &[u8]) -> Result<Point> {
    ping::ensure_space(setup).await?;
    let client = &setup.conns[0].client;
    client
        .create(PARENT, Kind::Base, Vec::new(), Strategy::Ensure)
        .await
        .map_err(|e| cluster(format!("creating {PARENT}<Base>"), &e))?;
    let artifact: Point = format!("{PARENT}:{name}")
        .parse()
        .map_err(|e| Error::Internal(format!("artifact point: {e}")))?;
    client
        .publish(artifact.clone(), module.to_vec())
        .await
        .map_err(|e| unavailable(format!("publishing the {name} guest at {artifact}"), &e))?;
    Ok(artifact)
}

/// Creates mechtron `point` of the guest at `artifact` (`Ensure`: an existing one is
/// reused).
pub async fn create_mechtron(
    client: &GateClient,
    point: String,
    artifact: &Point,
) -> Result<Point> {
    let props = vec![PropertyMod::set("wasm", artifact.to_string())];
    let record = client
        .create(point.as_str(), Kind::Mechtron, props, Strategy::Ensure)
        .await
        .map_err(|e| unavailable(format!("creating {point}<Mechtron>"), &e))?;
    Ok(record.point().clone())
}

/// The error for a cluster that cannot run mechtrons.
fn unavailable(what: String, e: &hyperverse_core::Error) -> Error {
    Error::Unsupported(format!(
        "mechtrons are not available in this cluster: {what} failed with {} {e}",
        e.status().0
    ))
}

/// The scenario's mechtrons and what each counter was sent.
#[derive(Debug)]
pub struct Mechtrons {
    echoes: Vec<Point>,
    counters: Vec<Point>,
    /// Each counter's `calls` before the run.
    initial: Vec<u64>,
    /// Counts each counter answered during the run.
    counted: Vec<AtomicU64>,
    /// Counts sent to each counter during the run.
    sent: Vec<AtomicU64>,
}

impl Mechtrons {
    /// Publishes the guests and creates `particles` mechtrons (half echo, half counter).
    pub async fn setup(setup: &Setup<'_>) -> Result<Mechtrons> {
        let echo = match &setup.knobs.echo_guest {
            // Named by its bytes: artifacts are immutable, and each module needs its own.
            Some(module) => {
                let name = format!("echo-{}", &content_hash(module)[..12]);
                publish(setup, &name, module).await?
            }
            None => publish(setup, "echo", ECHO_GUEST.as_bytes()).await?,
        };
        let counter = publish(setup, "counter", COUNTER_GUEST.as_bytes()).await?;
        let count = setup.knobs.particles.max(2);
        let conns = setup.conns;
        let (echo, counter) = (&echo, &counter);
        let created: Vec<(bool, Point)> = futures::stream::iter(0..count)
            .map(|i| async move {
                let client = &conns[i % conns.len()].client;
                let is_echo = i % 2 == 0;
                let (point, artifact) = if is_echo {
                    (format!("{PARENT}:e{}", i / 2), echo)
                } else {
                    (format!("{PARENT}:c{}", i / 2), counter)
                };
                create_mechtron(client, point, artifact)
                    .await
                    .map(|p| (is_echo, p))
            })
            .buffered(SETUP_IN_FLIGHT)
            .try_collect()
            .await?;
        let (echoes, counters): (Vec<_>, Vec<_>) = created.into_iter().partition(|(e, _)| *e);
        let echoes: Vec<Point> = echoes.into_iter().map(|(_, p)| p).collect();
        let counters: Vec<Point> = counters.into_iter().map(|(_, p)| p).collect();
        let client = &conns[0].client;
        let mut initial = Vec::new();
        for point in &counters {
            initial.push(
                calls(client, point, setup.knobs.timeout)
                    .await
                    .map_err(|e| Error::Cluster(format!("reading {point}: {e}")))?,
            );
        }
        Ok(Mechtrons {
            echoes,
            initial,
            counted: counters.iter().map(|_| AtomicU64::new(0)).collect(),
            sent: counters.iter().map(|_| AtomicU64::new(0)).collect(),
            counters,
        })
    }

    /// An echo ping or a count, half each.
    pub fn plan(&self, conn: usize, seq: u64, rng: &mut fastrand::Rng) -> Op {
        if rng.bool() || self.counters.is_empty() {
            Op::Echo {
                conn,
                to: self.echoes[rng.usize(..self.echoes.len())].clone(),
                seq,
            }
        } else {
            Op::Count {
                conn,
                counter: rng.usize(..self.counters.len()),
            }
        }
    }

    /// One wave to each mechtron per connection: an echo to echoes, a state read
    /// (which counts nothing) to counters.
    pub fn warmup(&self, conns: usize) -> Vec<Op> {
        (0..conns)
            .flat_map(|conn| {
                let echoes = self.echoes.iter().enumerate().map(move |(i, to)| Op::Echo {
                    conn,
                    to: to.clone(),
                    seq: i as u64,
                });
                let counters = self.counters.iter().map(move |to| Op::Read {
                    conn,
                    to: to.clone(),
                });
                echoes.chain(counters)
            })
            .collect()
    }

    /// Sends one count to counter `counter`; its answer must be a count past the one
    /// it had before the run.
    pub async fn count(&self, client: &GateClient, counter: usize, timeout: Duration) -> Outcome {
        let (Some(to), Some(initial)) = (self.counters.get(counter), self.initial.get(counter))
        else {
            return Outcome::Failed(format!("no counter {counter}"));
        };
        self.sent[counter].fetch_add(1, Ordering::Relaxed);
        let method = Method::Ext(COUNT_METHOD.into());
        match client
            .ping(to.clone(), method, Substance::Empty, timeout)
            .await
        {
            Ok(Substance::Text(text)) if text.parse::<u64>().is_ok_and(|n| n > *initial) => {
                self.counted[counter].fetch_add(1, Ordering::Relaxed);
                Outcome::Ok
            }
            Ok(_) => Outcome::Failed("mismatch".into()),
            Err(e) => failed(&e),
        }
    }

    /// Every counter must have grown by exactly the counts it answered (by at least
    /// those and at most those sent, when some failed).
    pub async fn verify(&self, client: &GateClient, timeout: Duration) -> Vec<Check> {
        let mut wrong = Vec::new();
        let mut total = 0;
        for (i, point) in self.counters.iter().enumerate() {
            let answered = self.counted[i].load(Ordering::Relaxed);
            let sent = self.sent[i].load(Ordering::Relaxed);
            total += answered;
            match calls(client, point, timeout).await {
                Ok(now) => {
                    let grew = now.saturating_sub(self.initial[i]);
                    if grew < answered || grew > sent {
                        wrong.push(format!(
                            "{point}: answered {answered} of {sent} counts, grew by {grew}"
                        ));
                    }
                }
                Err(e) => wrong.push(format!("{point}: {e}")),
            }
        }
        vec![Check {
            name: "counter mechtrons counted exactly the counts answered".into(),
            ok: wrong.is_empty(),
            detail: if wrong.is_empty() {
                format!("{} counters, {total} counts", self.counters.len())
            } else {
                wrong.join("; ")
            },
        }]
    }
}

/// A mechtron's successful calls so far (`calls` in its `Cmd<Read>` state).
async fn calls(client: &GateClient, point: &Point, timeout: Duration) -> Result<u64, String> {
    let read = client
        .ping(
            point.clone(),
            Method::Cmd(CmdMethod::Read),
            Substance::Empty,
            timeout,
        )
        .await
        .map_err(|e| format!("{} {e}", e.status().0))?;
    match read {
        Substance::Map(map) => match map.get("calls") {
            Some(Substance::Text(n)) => n
                .parse()
                .map_err(|_| format!("calls is not a number: {n:?}")),
            other => Err(format!("no calls in its state: {other:?}")),
        },
        other => Err(format!("its state is not a map: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guests_are_the_projects_own() {
        assert!(ECHO_GUEST.contains("hv_handle") && ECHO_GUEST.contains("hv_reply"));
        assert!(COUNTER_GUEST.contains("(global $count"));
    }
}

//! The `create` scenario: the creation rate. Each request creates a new particle
//! `localhost:create-<run>:n<seq>` (`Commit`: it must not exist), which the gate
//! registers, places on a star by load and has that star host — a Base particle, or
//! with `--create-kind mechtron` a counter mechtron, whose hosting activates a wasm
//! instance.

use hyperverse_core::Kind;
use hyperverse_core::particle::{PropertyMod, SetProperties};
use hyperverse_core::registry::Strategy;
use star_node::client::GateClient;

use super::{Op, Setup, failed, ping, wasm};
use crate::cli::CreateKind;
use crate::error::{Result, cluster};
use crate::record::Outcome;

/// The parent the run's creations go under, and what they are.
#[derive(Debug)]
pub struct Creations {
    parent: String,
    kind: Kind,
    properties: SetProperties,
}

impl Creations {
    /// Creates a fresh parent for this run (a random name, so runs never collide) and,
    /// for mechtrons, publishes the counter guest.
    pub async fn setup(setup: &Setup<'_>) -> Result<Creations> {
        ping::ensure_space(setup).await?;
        let (kind, properties) = match setup.knobs.create_kind {
            CreateKind::Base => (Kind::Base, Vec::new()),
            CreateKind::Mechtron => {
                let artifact =
                    wasm::publish(setup, "counter", wasm::COUNTER_GUEST.as_bytes()).await?;
                let wasm = PropertyMod::set("wasm", artifact.to_string());
                (Kind::Mechtron, vec![wasm])
            }
        };
        let parent = format!("{}:create-{:08x}", ping::SPACE, fastrand::u32(..));
        setup.conns[0]
            .client
            .create(parent.as_str(), Kind::Base, Vec::new(), Strategy::Commit)
            .await
            .map_err(|e| cluster(format!("creating {parent}<Base>"), &e))?;
        Ok(Creations {
            parent,
            kind,
            properties,
        })
    }

    /// Request `seq` creates child `n<seq>`.
    pub fn plan(&self, conn: usize, seq: u64) -> Op {
        Op::Create {
            conn,
            point: format!("{}:n{seq}", self.parent),
        }
    }

    /// Creates `point` and checks the record is the one asked for.
    pub async fn create(&self, client: &GateClient, point: String) -> Outcome {
        let created = client
            .create(
                point.as_str(),
                self.kind,
                self.properties.clone(),
                Strategy::Commit,
            )
            .await;
        match created {
            Ok(record) if record.point().to_string() == point => Outcome::Ok,
            Ok(_) => Outcome::Failed("mismatch".into()),
            Err(e) => failed(&e),
        }
    }
}

//! What travels through a gate after the handshake: the client protocol (`hv`,
//! `loadtest`) and the lane protocol between machines. Message shapes only.
//!
//! Clients (handshake peer `Client`, authenticated by a token):
//!
//! ```text
//! client ── ClientFrame { id, request: ClientRequest }          ──▶ gate
//! client ◀── GateFrame   { id, result: Result<Answer, Error> }   ── gate
//! ```
//!
//! Ids are the client's, unique among its requests in flight; answers come back in any
//! order. A failed request carries an [`Error`], whose status (`403 forbidden`) is what
//! a client reports.
//!
//! Lanes (handshake peer `Machine`, proved by the shared secret): the dialing machine
//! sends [`LaneFrame::Ping`]s and [`LaneFrame::Signal`]s to stars of the listening one
//! and gets [`LaneFrame::Pong`]s and [`LaneFrame::Moved`]s back on the same connection,
//! in any order. Each machine dials its own lane to each peer it sends to, so a
//! connection carries requests one way and their answers the other.

use hyperverse_core::particle::{Details, ParticleRecord, SetProperties, Stub};
use hyperverse_core::registry::{StarEntry, Strategy};
use hyperverse_core::security::{Access, AccessGrant, AccessGrantKind, GrantId};
use hyperverse_core::wave::{Headers, Method, Ping, Pong, Substance};
use hyperverse_core::{Error, Kind, Point, Selector};
use serde::{Deserialize, Serialize};

/// The largest handshake frame a gate accepts or sends.
pub const HANDSHAKE_MAX_FRAME: usize = 4096;

/// A client's request and the id its answer will carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientFrame {
    /// Chosen by the client, unique among its requests in flight.
    pub id: u64,
    /// What is asked.
    pub request: ClientRequest,
}

/// What a client may ask of a gate. Every request acts for the agent the connection's
/// token stands for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Send a ping to a particle; answered with the pong's body.
    Ping {
        /// The target particle.
        to: Point,
        /// What is asked (`Cmd<Bounce>`, `Ext<Count>`; `Hyp<…>` is refused).
        method: Method,
        /// Headers.
        headers: Headers,
        /// Payload.
        body: Substance,
        /// Milliseconds to wait for the pong before answering 408.
        timeout_ms: u32,
    },
    /// Send a signal (no answer from the particle; `Done` once it is on its way).
    Signal {
        /// The target particle.
        to: Point,
        /// What is asked.
        method: Method,
        /// Payload.
        body: Substance,
    },
    /// Create a particle and place it on a star; answered with its record.
    Create {
        /// Where, as text: a point, or a parent point followed by `:%` to take the
        /// next number of the parent's sequence as the name (`localhost:users:%`).
        point: String,
        /// What kind.
        kind: Kind,
        /// Initial properties.
        properties: SetProperties,
        /// What to do if it exists (`Commit` fails, `Ensure` returns what is there).
        strategy: Strategy,
        /// Create as this particle, which the agent fully controls: it becomes the owner.
        #[serde(default)]
        by: Option<Point>,
    },
    /// Store bytes (a wasm module) as an immutable `Artifact` particle; answered with
    /// its record (`hash`, `size`). Publishing the same bytes again succeeds.
    Publish {
        /// Where.
        point: Point,
        /// The content.
        #[serde(with = "serde_bytes")]
        bytes: Vec<u8>,
    },
    /// Move a particle, with its state, to another star; answered with its record.
    Migrate {
        /// Which.
        point: Point,
        /// The star key to move it to (`<<machine>>::role`).
        star: Point,
    },
    /// A particle's record.
    Get {
        /// Which.
        point: Point,
    },
    /// The particles matching a pattern.
    Select {
        /// The pattern.
        selector: Selector,
    },
    /// Delete a particle and everything below it; answered with the deleted points.
    Delete {
        /// Which.
        point: Point,
    },
    /// Grant `kind` on `on` to the agents matching `to`, made by this agent (or by the
    /// particle `by`).
    Grant {
        /// What is granted.
        kind: AccessGrantKind,
        /// On which particles.
        on: Selector,
        /// To which agents.
        to: Selector,
        /// The granter, when not the agent: a particle the agent fully controls.
        #[serde(default)]
        by: Option<Point>,
    },
    /// Remove a grant (its granter, or an agent with full access on its granter, may).
    Revoke {
        /// Which.
        id: GrantId,
        /// Remove as this particle, which the agent fully controls.
        #[serde(default)]
        by: Option<Point>,
    },
    /// What `agent` may do on `point`.
    Access {
        /// The agent's point (`GLOBAL::hyperuser`, `GLOBAL::anonymous`, a User).
        agent: Point,
        /// The particle.
        point: Point,
    },
    /// The live stars, as the gate's machine sees them (its last directory listing).
    Stars,
    /// Make `owner` the owner of every particle matching `on` (super on each needed).
    Chown {
        /// Which particles.
        on: Selector,
        /// The new owner: a registered particle, or the hyperuser.
        owner: Point,
        /// Act as this particle, which the agent fully controls.
        #[serde(default)]
        by: Option<Point>,
    },
    /// The grants indexed at the particles matching `selector` (all: `+:**`), with
    /// whether each counts.
    Grants {
        /// Which particles' grants.
        selector: Selector,
    },
}

impl ClientRequest {
    /// Every [`ClientRequest::op`] name (metric labels are initialised from it).
    pub const OPS: &'static [&'static str] = &[
        "ping", "signal", "create", "publish", "migrate", "get", "select", "delete", "grant",
        "revoke", "access", "stars", "chown", "grants",
    ];

    /// The snake_case name, for metrics and logs.
    pub fn op(&self) -> &'static str {
        match self {
            ClientRequest::Ping { .. } => "ping",
            ClientRequest::Signal { .. } => "signal",
            ClientRequest::Create { .. } => "create",
            ClientRequest::Publish { .. } => "publish",
            ClientRequest::Migrate { .. } => "migrate",
            ClientRequest::Get { .. } => "get",
            ClientRequest::Select { .. } => "select",
            ClientRequest::Delete { .. } => "delete",
            ClientRequest::Grant { .. } => "grant",
            ClientRequest::Revoke { .. } => "revoke",
            ClientRequest::Access { .. } => "access",
            ClientRequest::Stars => "stars",
            ClientRequest::Chown { .. } => "chown",
            ClientRequest::Grants { .. } => "grants",
        }
    }
}

/// The answer to the client request with the same id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateFrame {
    /// The id of the request answered.
    pub id: u64,
    /// The answer, or why there is none.
    pub result: Result<Answer, Error>,
}

/// A successful answer; which variant follows from the request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Answer {
    /// `Ping`: the pong's body.
    Body(Substance),
    /// `Create`, `Publish`, `Migrate`, `Get`: the particle's record.
    Record(ParticleRecord),
    /// `Select`: the matching particles, ordered by point.
    Stubs(Vec<Stub>),
    /// `Delete`: the deleted points, deepest first.
    Deleted(Vec<Point>),
    /// `Grant`: the new grant's id.
    Granted(GrantId),
    /// `Access`: the decision.
    Access(Access),
    /// `Stars`: the live stars, ordered by key.
    Stars(Vec<StarEntry>),
    /// `Signal`, `Revoke`: done.
    Done,
    /// `Get` by an agent that may read only some properties (`property:NAME:read`
    /// privileges, no `r`): the point, kind, status and those properties.
    Details(Details),
    /// `Chown`: how many particles changed hands.
    Chowned(u64),
    /// `Grants`: the grants, ordered by id.
    Grants(Vec<ListedGrant>),
}

/// A grant as `Grants` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListedGrant {
    /// Its id (`POINT#N`).
    pub id: GrantId,
    /// What it gives, on what, to whom, by whom.
    pub grant: AccessGrant,
    /// Whether it counts at its root point now.
    pub state: GrantState,
}

/// Whether a grant counts, judged at its root point (the point it is indexed at): its
/// granter must have the authority to give it there (super for `super`, owner or super
/// otherwise). Below the root the answer can differ where the granter owns more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum GrantState {
    /// It counts.
    Counting,
    /// It is ignored, and why.
    Ignored(String),
}

/// What machines send each other on a lane.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LaneFrame {
    /// A request for the particle `ping.to`, which the sender believes `star` hosts
    /// (or for `star` itself, when `ping.to` is the star).
    Ping {
        /// The star of the receiving machine it is for.
        star: Point,
        /// The request.
        ping: Ping,
    },
    /// A one-way wave, shaped as a ping that is never answered.
    Signal {
        /// The star of the receiving machine it is for.
        star: Point,
        /// The wave.
        wave: Ping,
    },
    /// The answer to a ping sent on this lane.
    Pong(Pong),
    /// The star named by a ping does not host its target; the registry places it at
    /// `location` (if anywhere). The ping comes back so the sender can route it again.
    Moved {
        /// The ping, as it was sent.
        ping: Ping,
        /// Where the registry says its target lives.
        location: Option<Point>,
    },
    /// Grants, owners or particles changed: drop cached access decisions, and stop
    /// hosting (and forget the location of) the `deleted` particles.
    Invalidate {
        /// Particles deleted from the registry.
        deleted: Vec<Point>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_names_every_request() {
        let p = || Point::root();
        let sel = || "+:**".parse::<Selector>().unwrap();
        let requests = [
            ClientRequest::Ping {
                to: p(),
                method: "Cmd<Bounce>".parse().unwrap(),
                headers: Headers::new(),
                body: Substance::Empty,
                timeout_ms: 1,
            },
            ClientRequest::Signal {
                to: p(),
                method: "Cmd<Bounce>".parse().unwrap(),
                body: Substance::Empty,
            },
            ClientRequest::Create {
                point: "x".into(),
                kind: Kind::Base,
                properties: Vec::new(),
                strategy: Strategy::Commit,
                by: None,
            },
            ClientRequest::Publish {
                point: p(),
                bytes: Vec::new(),
            },
            ClientRequest::Migrate {
                point: p(),
                star: p(),
            },
            ClientRequest::Get { point: p() },
            ClientRequest::Select { selector: sel() },
            ClientRequest::Delete { point: p() },
            ClientRequest::Grant {
                kind: AccessGrantKind::Super,
                on: sel(),
                to: sel(),
                by: None,
            },
            ClientRequest::Revoke {
                id: "ROOT#1".parse().unwrap(),
                by: None,
            },
            ClientRequest::Access {
                agent: p(),
                point: p(),
            },
            ClientRequest::Stars,
            ClientRequest::Chown {
                on: sel(),
                owner: p(),
                by: None,
            },
            ClientRequest::Grants { selector: sel() },
        ];
        let ops: Vec<&str> = requests.iter().map(ClientRequest::op).collect();
        assert_eq!(ops, ClientRequest::OPS);
    }
}

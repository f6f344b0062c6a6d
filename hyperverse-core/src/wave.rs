//! Waves: the messages particles exchange.
//!
//! A `Ping` is a request answered by exactly one `Pong`; a `Signal` is one-way; a
//! `Ripple` goes to many recipients and each answers with an `Echo`. Replies carry a
//! [`StatusCode`] (HTTP-like) and point back at the request's [`WaveId`]. This module is
//! data only: routing, timeouts and delivery live in `star-node`.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::budget::DEFAULT_WAVE_BUDGET;
use crate::error::Error;
use crate::particle::{Details, ParticleRecord, Stub};
use crate::point::Point;
use crate::security::{Access, IndexedAccessGrant};

/// The most hops a wave may take before it is dropped with an error.
pub const MAX_HOPS: u16 = 16;

/// A wave's identity: unique per process by construction (`origin` is random per
/// process, `seq` counts up), so unique across the hyperverse in practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct WaveId {
    /// Random per process (or per star).
    pub origin: u64,
    /// Counts up within the origin.
    pub seq: u64,
}

impl fmt::Display for WaveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.origin, self.seq)
    }
}

/// Hands out [`WaveId`]s for one origin.
#[derive(Debug)]
pub struct WaveIdGen {
    origin: u64,
    next: AtomicU64,
}

impl WaveIdGen {
    /// A generator for a given origin.
    pub fn new(origin: u64) -> Self {
        Self {
            origin,
            next: AtomicU64::new(1),
        }
    }

    /// A generator with a random origin (from the process's hash seed).
    pub fn random() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        hasher.write_u32(std::process::id());
        Self::new(hasher.finish())
    }

    /// The next id.
    pub fn next_id(&self) -> WaveId {
        WaveId {
            origin: self.origin,
            seq: self.next.fetch_add(1, Ordering::Relaxed),
        }
    }
}

/// Who a wave acts for; access is decided for this agent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Agent {
    /// Nobody in particular: no token presented.
    Anonymous,
    /// The hyperuser: super access everywhere.
    HyperUser,
    /// A particle (usually a `User`) acting as itself.
    Point(Point),
}

impl Agent {
    /// The point that stands for this agent in grants and ownership.
    pub fn point(&self) -> Point {
        match self {
            Agent::Anonymous => Point::anonymous(),
            Agent::HyperUser => Point::hyperuser(),
            Agent::Point(p) => p.clone(),
        }
    }

    /// The agent a point stands for (`GLOBAL::hyperuser` is the hyperuser).
    pub fn from_point(point: Point) -> Agent {
        if point == Point::hyperuser() {
            Agent::HyperUser
        } else if point == Point::anonymous() {
            Agent::Anonymous
        } else {
            Agent::Point(point)
        }
    }
}

impl fmt::Display for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.point())
    }
}

/// Hyperverse-internal methods (provisioning, assignment, transport).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HypMethod {
    /// Create a particle.
    Provision,
    /// Assign a particle to a star.
    Assign,
    /// Host a particle in a star's driver.
    Host,
    /// Initialise a particle.
    Init,
    /// Carry another wave.
    Transport,
    /// Find stars or particles.
    Search,
    /// Move a particle to another star.
    Migrate,
}

/// Commands a client or particle may send to a particle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CmdMethod {
    /// Initialise.
    Init,
    /// Read the particle's state.
    Read,
    /// Update the particle's state.
    Update,
    /// Run a command.
    Command,
    /// Check that the particle answers.
    Bounce,
    /// Ask to be let in.
    Knock,
    /// Greet the gate.
    Greet,
    /// Log a line.
    Log,
}

/// HTTP methods, for particles that speak HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum HttpMethod {
    /// GET
    Get,
    /// POST
    Post,
    /// PUT
    Put,
    /// DELETE
    Delete,
    /// PATCH
    Patch,
    /// HEAD
    Head,
    /// OPTIONS
    Options,
}

/// What a wave asks for: `Hyp<…>`, `Cmd<…>`, `Http<…>` or `Ext<…>` (a driver's own).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Method {
    /// Hyperverse-internal.
    Hyp(HypMethod),
    /// A command.
    Cmd(CmdMethod),
    /// An HTTP method.
    Http(HttpMethod),
    /// An extension method named by the driver (CamelCase).
    Ext(String),
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Method::Hyp(m) => write!(f, "Hyp<{m:?}>"),
            Method::Cmd(m) => write!(f, "Cmd<{m:?}>"),
            Method::Http(m) => write!(f, "Http<{m:?}>"),
            Method::Ext(m) => write!(f, "Ext<{m}>"),
        }
    }
}

fn parse_variant<T: fmt::Debug + Copy>(all: &[T], name: &str, what: &str) -> Result<T, Error> {
    all.iter()
        .copied()
        .find(|v| format!("{v:?}") == name)
        .ok_or_else(|| Error::bad_request(format!("unknown {what} method {name:?}")))
}

impl FromStr for Method {
    type Err = Error;

    /// Parses `Hyp<Assign>`, `Cmd<Read>`, `Http<Get>`, `Ext<MyMethod>`; a bare CamelCase
    /// name is taken as `Ext<Name>`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        use CmdMethod as C;
        use HttpMethod as H;
        use HypMethod as Y;
        let Some((family, rest)) = s.split_once('<') else {
            return parse_ext(s);
        };
        let name = rest.strip_suffix('>').ok_or_else(|| {
            Error::bad_request(format!("method {s:?} opens '<' without closing '>'"))
        })?;
        match family {
            "Hyp" => parse_variant(
                &[
                    Y::Provision,
                    Y::Assign,
                    Y::Host,
                    Y::Init,
                    Y::Transport,
                    Y::Search,
                    Y::Migrate,
                ],
                name,
                "Hyp",
            )
            .map(Method::Hyp),
            "Cmd" => parse_variant(
                &[
                    C::Init,
                    C::Read,
                    C::Update,
                    C::Command,
                    C::Bounce,
                    C::Knock,
                    C::Greet,
                    C::Log,
                ],
                name,
                "Cmd",
            )
            .map(Method::Cmd),
            "Http" => parse_variant(
                &[
                    H::Get,
                    H::Post,
                    H::Put,
                    H::Delete,
                    H::Patch,
                    H::Head,
                    H::Options,
                ],
                name,
                "Http",
            )
            .map(Method::Http),
            "Ext" => parse_ext(name),
            _ => Err(Error::bad_request(format!(
                "unknown method family {family:?} (use Hyp, Cmd, Http or Ext)"
            ))),
        }
    }
}

fn parse_ext(name: &str) -> Result<Method, Error> {
    let camel = name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric());
    if camel && name.len() <= 64 {
        Ok(Method::Ext(name.to_string()))
    } else {
        Err(Error::bad_request(format!(
            "extension method {name:?} must be CamelCase letters and digits"
        )))
    }
}

/// Free-form headers.
pub type Headers = BTreeMap<String, String>;

/// A wave's payload.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Substance {
    /// No payload.
    #[default]
    Empty,
    /// UTF-8 text.
    Text(String),
    /// Raw bytes.
    Bin(#[serde(with = "serde_bytes")] Vec<u8>),
    /// A point.
    Point(Point),
    /// Several points.
    Points(Vec<Point>),
    /// A stub.
    Stub(Stub),
    /// Several stubs (a selection).
    Stubs(Vec<Stub>),
    /// Details.
    Details(Details),
    /// A full record.
    Record(ParticleRecord),
    /// An access decision.
    Access(Access),
    /// Access grants.
    Grants(Vec<IndexedAccessGrant>),
    /// A list of payloads.
    List(Vec<Substance>),
    /// Named payloads.
    Map(BTreeMap<String, Substance>),
    /// An error (in a failed reply).
    Error(Error),
}

impl Substance {
    /// The payload as bytes, if it is text or bytes.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Substance::Text(t) => Some(t.as_bytes()),
            Substance::Bin(b) => Some(b),
            _ => None,
        }
    }
}

/// A reply's status, HTTP-like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StatusCode(pub u16);

impl StatusCode {
    /// 200: done.
    pub const OK: StatusCode = StatusCode(200);
    /// 400: the request is malformed or invalid.
    pub const BAD_REQUEST: StatusCode = StatusCode(400);
    /// 403: the agent may not do this.
    pub const FORBIDDEN: StatusCode = StatusCode(403);
    /// 404: no such particle (or thing).
    pub const NOT_FOUND: StatusCode = StatusCode(404);
    /// 408: no reply within the wave's timeout.
    pub const TIMEOUT: StatusCode = StatusCode(408);
    /// 409: it exists already.
    pub const CONFLICT: StatusCode = StatusCode(409);
    /// 413: the payload is over a limit.
    pub const PAYLOAD_TOO_LARGE: StatusCode = StatusCode(413);
    /// 421: the target is no longer at this star; look it up again.
    pub const MOVED: StatusCode = StatusCode(421);
    /// 500: a failure inside the handler or the platform.
    pub const INTERNAL: StatusCode = StatusCode(500);
    /// 503: try again later.
    pub const UNAVAILABLE: StatusCode = StatusCode(503);

    /// Whether this is a 2xx status.
    pub fn is_ok(&self) -> bool {
        (200..300).contains(&self.0)
    }

    /// The short reason phrase (`forbidden`).
    pub fn reason(&self) -> &'static str {
        match self.0 {
            200 => "ok",
            400 => "bad request",
            403 => "forbidden",
            404 => "not found",
            408 => "timeout",
            409 => "conflict",
            413 => "payload too large",
            421 => "moved",
            500 => "internal error",
            503 => "unavailable",
            201..=299 => "success",
            401..=499 => "client error",
            _ => "server error",
        }
    }
}

impl fmt::Display for StatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// How a request should be handled by the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Handling {
    /// Milliseconds the sender waits for a reply before it gets a 408.
    pub timeout_ms: u32,
}

impl Default for Handling {
    fn default() -> Self {
        Self { timeout_ms: 10_000 }
    }
}

/// A request: answered by exactly one [`Pong`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ping {
    /// Identity, echoed in the reply's `reply_to`.
    pub id: WaveId,
    /// The sending particle.
    pub from: Point,
    /// The target particle.
    pub to: Point,
    /// Who the wave acts for.
    pub agent: Agent,
    /// What is asked.
    pub method: Method,
    /// Headers.
    pub headers: Headers,
    /// Payload.
    pub body: Substance,
    /// Hops taken so far.
    pub hops: u16,
    /// The most waves this one may still cause, at any depth (see [`crate::budget`]).
    pub budget: u32,
    /// Timeout and the like.
    pub handling: Handling,
}

/// One-way: no reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signal {
    /// Identity.
    pub id: WaveId,
    /// The sending particle.
    pub from: Point,
    /// The target particle.
    pub to: Point,
    /// Who the wave acts for.
    pub agent: Agent,
    /// What is asked.
    pub method: Method,
    /// Headers.
    pub headers: Headers,
    /// Payload.
    pub body: Substance,
    /// Hops taken so far.
    pub hops: u16,
    /// The most waves this one may still cause, at any depth (see [`crate::budget`]).
    pub budget: u32,
}

/// A request to many recipients, each answering with an [`Echo`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ripple {
    /// Identity, echoed in every echo's `reply_to`.
    pub id: WaveId,
    /// The sending particle.
    pub from: Point,
    /// The target particles.
    pub to: Vec<Point>,
    /// Who the wave acts for.
    pub agent: Agent,
    /// What is asked.
    pub method: Method,
    /// Headers.
    pub headers: Headers,
    /// Payload.
    pub body: Substance,
    /// Hops taken so far.
    pub hops: u16,
    /// The most waves this one may still cause, at any depth (see [`crate::budget`]).
    pub budget: u32,
    /// Timeout for gathering echoes.
    pub handling: Handling,
}

/// The reply to a [`Ping`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pong {
    /// Identity of this reply.
    pub id: WaveId,
    /// The ping answered.
    pub reply_to: WaveId,
    /// The answering particle.
    pub from: Point,
    /// The ping's sender.
    pub to: Point,
    /// The outcome.
    pub status: StatusCode,
    /// Headers.
    pub headers: Headers,
    /// Payload (an [`Substance::Error`] when the status is not 2xx).
    pub body: Substance,
    /// Hops taken so far.
    pub hops: u16,
}

/// One recipient's reply to a [`Ripple`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Echo {
    /// Identity of this reply.
    pub id: WaveId,
    /// The ripple answered.
    pub reply_to: WaveId,
    /// The answering particle.
    pub from: Point,
    /// The ripple's sender.
    pub to: Point,
    /// The outcome.
    pub status: StatusCode,
    /// Payload.
    pub body: Substance,
    /// Hops taken so far.
    pub hops: u16,
}

/// Any wave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Wave {
    /// A request.
    Ping(Ping),
    /// A reply to a ping.
    Pong(Pong),
    /// A one-way message.
    Signal(Signal),
    /// A request to many.
    Ripple(Ripple),
    /// A reply to a ripple.
    Echo(Echo),
}

impl Ping {
    /// A ping with default headers, body and handling, and the default budget.
    pub fn new(id: WaveId, from: Point, to: Point, agent: Agent, method: Method) -> Self {
        Self {
            id,
            from,
            to,
            agent,
            method,
            headers: Headers::new(),
            body: Substance::Empty,
            hops: 0,
            budget: DEFAULT_WAVE_BUDGET,
            handling: Handling::default(),
        }
    }

    /// The successful reply to this ping.
    pub fn ok(&self, id: WaveId, body: Substance) -> Pong {
        self.reply(id, StatusCode::OK, body)
    }

    /// The failed reply to this ping carrying `error`.
    pub fn fail(&self, id: WaveId, error: Error) -> Pong {
        self.reply(id, error.status(), Substance::Error(error))
    }

    /// Counts one more hop; refuses once the ping has taken [`MAX_HOPS`].
    pub fn hop(&mut self) -> Result<(), Error> {
        count_hop(&mut self.hops)
    }

    /// A reply with any status.
    pub fn reply(&self, id: WaveId, status: StatusCode, body: Substance) -> Pong {
        Pong {
            id,
            reply_to: self.id,
            from: self.to.clone(),
            to: self.from.clone(),
            status,
            headers: Headers::new(),
            body,
            hops: 0,
        }
    }
}

/// Counts one more hop in `hops`; refuses once [`MAX_HOPS`] were taken.
fn count_hop(hops: &mut u16) -> Result<(), Error> {
    if *hops >= MAX_HOPS {
        return Err(Error::bad_request(format!(
            "wave exceeded the hop limit of {MAX_HOPS}"
        )));
    }
    *hops += 1;
    Ok(())
}

impl Pong {
    /// `Ok(body)` for a 2xx reply; the carried error otherwise.
    pub fn into_result(self) -> Result<Substance, Error> {
        if self.status.is_ok() {
            return Ok(self.body);
        }
        match self.body {
            Substance::Error(e) => Err(e),
            other => Err(Error::internal(format!(
                "{} with body {other:?}",
                self.status
            ))),
        }
    }
}

impl Wave {
    /// The wave's id.
    pub fn id(&self) -> WaveId {
        match self {
            Wave::Ping(w) => w.id,
            Wave::Pong(w) => w.id,
            Wave::Signal(w) => w.id,
            Wave::Ripple(w) => w.id,
            Wave::Echo(w) => w.id,
        }
    }

    /// The wave's sender.
    pub fn from(&self) -> &Point {
        match self {
            Wave::Ping(w) => &w.from,
            Wave::Pong(w) => &w.from,
            Wave::Signal(w) => &w.from,
            Wave::Ripple(w) => &w.from,
            Wave::Echo(w) => &w.from,
        }
    }

    fn hops_mut(&mut self) -> &mut u16 {
        match self {
            Wave::Ping(w) => &mut w.hops,
            Wave::Pong(w) => &mut w.hops,
            Wave::Signal(w) => &mut w.hops,
            Wave::Ripple(w) => &mut w.hops,
            Wave::Echo(w) => &mut w.hops,
        }
    }

    /// Hops taken so far.
    pub fn hops(&self) -> u16 {
        match self {
            Wave::Ping(w) => w.hops,
            Wave::Pong(w) => w.hops,
            Wave::Signal(w) => w.hops,
            Wave::Ripple(w) => w.hops,
            Wave::Echo(w) => w.hops,
        }
    }

    /// Counts one more hop; refuses once the wave has taken [`MAX_HOPS`].
    pub fn hop(&mut self) -> Result<(), Error> {
        count_hop(self.hops_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ping() -> Ping {
        Ping::new(
            WaveIdGen::new(7).next_id(),
            "localhost:a".parse().unwrap(),
            "localhost:b".parse().unwrap(),
            Agent::HyperUser,
            Method::Cmd(CmdMethod::Bounce),
        )
    }

    #[test]
    fn hop_limit_is_enforced() {
        let mut wave = Wave::Ping(ping());
        for _ in 0..MAX_HOPS {
            wave.hop().unwrap();
        }
        assert_eq!(wave.hops(), MAX_HOPS);
        assert!(wave.hop().unwrap_err().to_string().contains("hop limit"));
    }

    #[test]
    fn replies_point_back_and_carry_errors() {
        let ping = ping();
        let ids = WaveIdGen::new(9);
        let pong = ping.fail(ids.next_id(), Error::forbidden("no"));
        assert_eq!(pong.reply_to, ping.id);
        assert_eq!(pong.to, ping.from);
        assert_eq!(pong.status.to_string(), "403 forbidden");
        assert_eq!(pong.into_result(), Err(Error::forbidden("no")));
        let ok = ping.ok(ids.next_id(), Substance::Text("hi".into()));
        assert_eq!(ok.into_result(), Ok(Substance::Text("hi".into())));
    }

    #[test]
    fn ids_are_unique_per_generator() {
        let ids = WaveIdGen::random();
        let a = ids.next_id();
        let b = ids.next_id();
        assert_ne!(a, b);
        assert_eq!(a.origin, b.origin);
    }

    #[test]
    fn methods_print_and_parse() {
        for s in ["Hyp<Assign>", "Cmd<Read>", "Http<Get>", "Ext<Count>"] {
            assert_eq!(s.parse::<Method>().unwrap().to_string(), s);
        }
        assert_eq!(
            "Count".parse::<Method>().unwrap(),
            Method::Ext("Count".into())
        );
        assert!(matches!(
            "Cmd<Fly>".parse::<Method>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "Bogus<Read>".parse::<Method>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "not camel".parse::<Method>(),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            "Cmd<Read".parse::<Method>(),
            Err(Error::BadRequest(_))
        ));
    }
}

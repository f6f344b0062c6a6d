//! The client requests other than pings, as the gate's machine carries them out for the
//! session's agent: create (with placement), get, select, delete, access, stars; and,
//! through [`crate::authority`], grant, revoke, chown and grants.
//!
//! Access rules (the hyperuser passes every check):
//!
//! | request | needs |
//! |---|---|
//! | `create P` | `c` on P's parent; to `Override` an existing P, what `delete P` needs; for `Ensure` to answer an existing P, `r` on it (otherwise `409`, as for `Commit`, with nothing about P) |
//! | `publish P` | `c` on P's parent |
//! | `migrate P S` | owner or super on P |
//! | `get P` | `r` on P for the record; with `property:NAME:read` privileges only, the stub and those properties |
//! | `select S` | `s` on S's root point; answers only the points whose parent the agent may select |
//! | `delete P` | for P and every particle below it: owner or super on it, or `d` on its parent |
//! | `grant` | a logged-in agent with the authority to give it on the grant's root point: super for `super`, owner or super for a mask or a privilege; the grant then counts only where its granter has that authority ([`crate::authority`]) |
//! | `revoke` | its granter, or full access (owner or super) on its granter |
//! | `chown S O` | super on every particle matching S; O registered (or the hyperuser) |
//! | `grants S` | a logged-in agent; lists the grants at the particles of S it may read (`r`) |
//! | `--by P` (create, grant, revoke, chown) | owner or super on P: the checks then pass for the agent or P, and P is recorded ([`crate::authority`]) |
//! | `access A P` | a logged-in agent; `r` on A when A is another agent. A missing P answers "no rights" (to all but the hyperuser) |
//! | `stars` | a logged-in agent |
//!
//! `stars` answers with the live stars as this machine sees them: the directory it
//! reads every `directory_refresh_ms`, which is what it places particles by.
//!
//! A change to grants, owners or particles is broadcast to every live machine, which
//! drops its cached access decisions (and releases deleted particles).

use std::collections::HashMap;
use std::rc::Rc;

use hyperverse_core::particle::{
    Details, ParticleRecord, PropertyMod, SetProperties, Status, Stub,
};
use hyperverse_core::registry::{Registration, Strategy};
use hyperverse_core::security::{Access, ChildPerms, Permissions, readable_properties};
use hyperverse_core::wave::{HypMethod, Substance};
use hyperverse_core::{Agent, Error, Kind, Point, Result, Selector};

use crate::authority::{self, Acting};
use crate::machine::Machine;
use crate::protocol::{Answer, ClientRequest};

/// Carries out `request` (not a ping) for `agent`.
pub async fn run(machine: &Rc<Machine>, agent: &Agent, request: ClientRequest) -> Result<Answer> {
    let answer = match request {
        ClientRequest::Create {
            point,
            kind,
            properties,
            strategy,
            by,
        } => {
            let acting = Acting::new(machine, agent, by).await?;
            let record = create(machine, &acting, &point, kind, properties, strategy).await?;
            Answer::Record(record)
        }
        ClientRequest::Publish { point, bytes } => {
            Answer::Record(publish(machine, agent, &point, bytes).await?)
        }
        ClientRequest::Migrate { point, star } => {
            Answer::Record(migrate(machine, agent, &point, &star).await?)
        }
        ClientRequest::Get { point } => get(machine, agent, &point).await?,
        ClientRequest::Select { selector } => {
            let root = selector.root_point();
            require(machine, agent, &root, select()).await?;
            let stubs = machine.registry.select(&selector).await?;
            Answer::Stubs(visible(machine, agent, &root, stubs).await?)
        }
        ClientRequest::Delete { point } => {
            may_delete_subtree(machine, agent, &point).await?;
            let deleted = machine.registry.delete(&point).await?;
            machine.invalidate(deleted.clone());
            Answer::Deleted(deleted)
        }
        ClientRequest::Grant { kind, on, to, by } => {
            let acting = Acting::new(machine, agent, by).await?;
            Answer::Granted(authority::grant(machine, &acting, kind, on, to).await?)
        }
        ClientRequest::Revoke { id, by } => {
            let acting = Acting::new(machine, agent, by).await?;
            authority::revoke(machine, &acting, &id).await?;
            Answer::Done
        }
        ClientRequest::Chown { on, owner, by } => {
            let acting = Acting::new(machine, agent, by).await?;
            Answer::Chowned(authority::chown(machine, &acting, &on, &owner).await?)
        }
        ClientRequest::Grants { selector } => {
            Answer::Grants(authority::list(machine, agent, &selector).await?)
        }
        ClientRequest::Access { agent: of, point } => {
            Answer::Access(access_of(machine, agent, of, &point).await?)
        }
        ClientRequest::Stars => {
            logged_in(machine, agent, &Point::root())?;
            Answer::Stars(machine.directory.borrow().entries())
        }
        ClientRequest::Ping { .. } | ClientRequest::Signal { .. } => {
            return Err(Error::internal("waves are the gate's to route"));
        }
    };
    Ok(answer)
}

/// Registers the particle (`Pending`), places it on a live star, has that star host it
/// (which records the location and `Ready`), and returns its record.
async fn create(
    machine: &Rc<Machine>,
    acting: &Acting,
    text: &str,
    kind: Kind,
    properties: SetProperties,
    strategy: Strategy,
) -> Result<ParticleRecord> {
    let point = match text.strip_suffix(":%") {
        Some(parent) => {
            let parent: Point = parent.parse()?;
            acting
                .either(|a| require(machine, a, &parent, create_child()))
                .await?;
            let n = machine.registry.sequence(&parent).await?;
            parent.push(&n.to_string())?
        }
        None => {
            let point: Point = text.parse()?;
            let parent = point.parent().ok_or_else(|| {
                Error::bad_request(format!("{point} is a root: roots always exist"))
            })?;
            acting
                .either(|a| require(machine, a, &parent, create_child()))
                .await?;
            point
        }
    };
    match strategy {
        Strategy::Override => acting.either(|a| may_override(machine, a, &point)).await?,
        // `may_ensure` refuses with the 409 a `Commit` would get, not a 403.
        Strategy::Ensure => match may_ensure(machine, &acting.caller, &point).await {
            Err(Error::AlreadyExists(_)) if acting.acting_as != acting.caller => {
                may_ensure(machine, &acting.acting_as, &point).await?
            }
            other => other?,
        },
        Strategy::Commit => {}
    }
    let registration = Registration {
        point: point.clone(),
        kind,
        properties,
        owner: acting.point(),
        strategy,
        status: Status::Pending,
        request_id: None,
    };
    machine.registry.register(&registration).await?;
    if strategy == Strategy::Override {
        // Whoever hosted the old particle lets it go.
        machine.invalidate(vec![point.clone()]);
    }
    let record = machine.registry.record(&point).await?;
    let placed = record.location.star.is_some() && record.details.stub.status == Status::Ready;
    if strategy == Strategy::Ensure && placed {
        return Ok(record);
    }
    machine.place_and_assign(&record).await?;
    machine.registry.record(&point).await
}

/// Registers an `Artifact` (`Ready`, on no star: artifacts are data, read through the
/// registry) with its hash and size, then stores its bytes. If the bytes are refused
/// (too large), a record this call registered is removed again.
async fn publish(
    machine: &Rc<Machine>,
    agent: &Agent,
    point: &Point,
    bytes: Vec<u8>,
) -> Result<ParticleRecord> {
    let parent = point
        .parent()
        .ok_or_else(|| Error::bad_request(format!("{point} is a root: roots always exist")))?;
    require(machine, agent, &parent, create_child()).await?;
    let hash = hyperverse_core::registry::content_hash(&bytes);
    let size = bytes.len().to_string();
    let registration = Registration {
        point: point.clone(),
        kind: Kind::Artifact,
        properties: vec![
            PropertyMod::set("hash", hash.clone()),
            PropertyMod::set("size", size),
        ],
        owner: agent.point(),
        strategy: Strategy::Ensure,
        status: Status::Ready,
        request_id: None,
    };
    let details = machine.registry.register(&registration).await?;
    let existing = details.properties.get("hash").map(|p| p.value.as_str());
    if existing != Some(hash.as_str()) {
        return Err(Error::AlreadyExists(format!(
            "artifact {point} holds other bytes; artifacts are immutable"
        )));
    }
    if let Err(e) = machine.registry.put_artifact(point, bytes.into()).await {
        let had_bytes = machine.registry.get_artifact(point).await.is_ok();
        if !had_bytes {
            let _ = machine.registry.delete(point).await;
        }
        return Err(e);
    }
    machine.registry.record(point).await
}

/// Moves `point` to star `to` (live, hosting its kind) through its current star, which
/// saves its state and parks its waves while it moves; returns the new record.
async fn migrate(
    machine: &Rc<Machine>,
    agent: &Agent,
    point: &Point,
    to: &Point,
) -> Result<ParticleRecord> {
    if *agent != Agent::HyperUser {
        let access = machine.registry.access(agent, point).await?;
        if !access.is_owner() && !access.is_super() {
            let why = Error::forbidden("moving a particle takes its owner or super access");
            return Err(denied(machine, agent, point, why));
        }
    }
    let record = machine.registry.record(point).await?;
    let kind = record.kind().base();
    let hosts = machine
        .directory
        .borrow()
        .get(to)
        .map(|e| e.hosts.contains(&kind));
    match hosts {
        None => return Err(Error::bad_request(format!("star {to} is not live"))),
        Some(false) => {
            return Err(Error::bad_request(format!(
                "star {to} does not host {kind}"
            )));
        }
        Some(true) => {}
    }
    let from = record
        .location
        .star
        .clone()
        .ok_or_else(|| Error::bad_request(format!("{point} is on no star yet")))?;
    if from == *to {
        return Ok(record);
    }
    let body = Substance::Points(vec![point.clone(), to.clone()]);
    let ping = machine.platform_ping(&from, HypMethod::Migrate, body);
    machine.call(&from, ping).await?;
    machine.registry.record(point).await
}

/// `Forbidden` unless `agent` has `needed` on `point`.
async fn require(
    machine: &Machine,
    agent: &Agent,
    point: &Point,
    needed: Permissions,
) -> Result<()> {
    if *agent == Agent::HyperUser {
        return Ok(());
    }
    let access = machine.registry.access(agent, point).await?;
    access
        .check(&needed)
        .map_err(|e| denied(machine, agent, point, e))
}

/// `Ensure` answers with an existing particle's record, so it takes what `get` takes
/// when the particle exists: an agent that may not read it is told only that the name
/// is taken (the `409` a `Commit` would get).
async fn may_ensure(machine: &Machine, agent: &Agent, point: &Point) -> Result<()> {
    if *agent == Agent::HyperUser {
        return Ok(());
    }
    match machine.registry.access(agent, point).await {
        Ok(access) if access.check(&read()).is_ok() => Ok(()),
        Ok(_) => Err(Error::AlreadyExists(format!("particle {point}"))),
        Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The stubs of `stubs` that `agent` may see: the selection's root (whose `s` was
/// checked), and every other point whose parent the agent may select (`s`; owners and
/// supers hold it). One decision per distinct parent.
async fn visible(
    machine: &Machine,
    agent: &Agent,
    root: &Point,
    stubs: Vec<Stub>,
) -> Result<Vec<Stub>> {
    if *agent == Agent::HyperUser {
        return Ok(stubs);
    }
    let mut may_list = ChildRight::new(|child| child.select);
    may_list.decided.insert(root.clone(), true); // checked before the selection
    let mut seen = Vec::with_capacity(stubs.len());
    for stub in stubs {
        if stub.point == *root {
            seen.push(stub);
            continue;
        }
        let Some(parent) = stub.point.parent() else {
            continue;
        };
        if may_list.held(machine, agent, parent).await? {
            seen.push(stub);
        }
    }
    Ok(seen)
}

/// One right over children (`s`, `d`) of one agent, decided once per parent.
struct ChildRight {
    right: fn(&ChildPerms) -> bool,
    decided: HashMap<Point, bool>,
}

impl ChildRight {
    fn new(right: fn(&ChildPerms) -> bool) -> Self {
        Self {
            right,
            decided: HashMap::new(),
        }
    }

    /// Whether `agent` holds the right on `parent` (not when `parent` is gone).
    async fn held(&mut self, machine: &Machine, agent: &Agent, parent: Point) -> Result<bool> {
        if let Some(held) = self.decided.get(&parent) {
            return Ok(*held);
        }
        let held = match machine.registry.access(agent, &parent).await {
            Ok(access) => (self.right)(&access.permissions().child),
            Err(Error::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        self.decided.insert(parent, held);
        Ok(held)
    }
}

/// Deleting `point` deletes its whole subtree, so it takes what deleting each particle
/// in it takes; the first one refused is named, and nothing is deleted. (A particle
/// created below `point` between this check and the delete goes with it.)
async fn may_delete_subtree(machine: &Machine, agent: &Agent, point: &Point) -> Result<()> {
    may_delete(machine, agent, point).await?;
    if *agent == Agent::HyperUser {
        return Ok(());
    }
    let below = machine.registry.select(&Selector::below(point)).await?;
    let mut may_delete_children = ChildRight::new(|child| child.delete);
    for stub in &below {
        let Some(parent) = stub.point.parent() else {
            continue;
        };
        if may_delete_children.held(machine, agent, parent).await? {
            continue;
        }
        let access = match machine.registry.access(agent, &stub.point).await {
            Ok(access) => access,
            // Deleted meanwhile: nothing left to refuse.
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        };
        if !access.is_owner() && !access.is_super() {
            let why = Error::forbidden(format!(
                "deleting {point} would delete {}, which it may not delete (it takes the \
                 owner, super, or d on its parent)",
                stub.point
            ));
            return Err(denied(machine, agent, point, why));
        }
    }
    Ok(())
}

/// `get`: the record to an agent with `r`; to one with `property:NAME:read`
/// privileges only, the stub and those properties ([`Answer::Details`]).
async fn get(machine: &Machine, agent: &Agent, point: &Point) -> Result<Answer> {
    if *agent == Agent::HyperUser {
        return Ok(Answer::Record(machine.registry.record(point).await?));
    }
    let access = machine.registry.access(agent, point).await?;
    let refused = match access.check(&read()) {
        Ok(()) => return Ok(Answer::Record(machine.registry.record(point).await?)),
        Err(refused) => refused,
    };
    let record = machine.registry.record(point).await?;
    match readable_properties(&access, record.details.properties) {
        Some(properties) => Ok(Answer::Details(Details {
            stub: record.details.stub,
            properties,
        })),
        None => Err(denied(machine, agent, point, refused)),
    }
}

/// `Forbidden` for an anonymous agent: `on` names what it asked about.
pub(crate) fn logged_in(machine: &Machine, agent: &Agent, on: &Point) -> Result<()> {
    if *agent == Agent::Anonymous {
        let why = Error::forbidden("this request takes a logged-in agent");
        return Err(denied(machine, agent, on, why));
    }
    Ok(())
}

/// What `of` may do on `point`, asked by `agent`: a logged-in agent may ask about itself,
/// and about another agent it may read. A point that does not exist answers "nothing",
/// as one the agent has no rights on does, so the answer does not tell who may not see
/// it whether it exists (the hyperuser gets `NotFound`).
async fn access_of(machine: &Machine, agent: &Agent, of: Point, point: &Point) -> Result<Access> {
    logged_in(machine, agent, point)?;
    let of = Agent::from_point(of);
    if of != *agent {
        require(machine, agent, &of.point(), read()).await?;
    }
    match machine.registry.access(&of, point).await {
        Err(Error::NotFound(_)) if *agent != Agent::HyperUser => Ok(Access::none()),
        answer => answer,
    }
}

/// Replacing a particle takes what deleting it takes: its owner, super, or `d` on its
/// parent (a particle that does not exist yet needs only the `c` checked before).
async fn may_override(machine: &Machine, agent: &Agent, point: &Point) -> Result<()> {
    match machine.registry.record(point).await {
        Ok(_) => may_delete(machine, agent, point).await,
        Err(Error::NotFound(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

async fn may_delete(machine: &Machine, agent: &Agent, point: &Point) -> Result<()> {
    if *agent == Agent::HyperUser {
        return Ok(());
    }
    let access: Access = machine.registry.access(agent, point).await?;
    if access.is_owner() || access.is_super() {
        return Ok(());
    }
    match point.parent() {
        Some(parent) => require(machine, agent, &parent, delete_child()).await,
        None => Err(denied(
            machine,
            agent,
            point,
            Error::forbidden("a root cannot be deleted"),
        )),
    }
}

pub(crate) fn denied(machine: &Machine, agent: &Agent, point: &Point, why: Error) -> Error {
    machine.metrics.access_denied.inc();
    Error::forbidden(format!("{agent} on {point}: {why}"))
}

fn read() -> Permissions {
    let mut p = Permissions::none();
    p.particle.read = true;
    p
}

fn select() -> Permissions {
    let mut p = Permissions::none();
    p.child.select = true;
    p
}

fn create_child() -> Permissions {
    let mut p = Permissions::none();
    p.child.create = true;
    p
}

fn delete_child() -> Permissions {
    let mut p = Permissions::none();
    p.child.delete = true;
    p
}

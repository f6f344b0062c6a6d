//! Who a client request acts as, and the requests that change or show who may do what:
//! grants made, revoked and listed, owners changed.
//!
//! **Acting as a particle** (`--by P` on create, grant, revoke, chown): the session's
//! agent may act as a particle it fully controls — itself, one it owns, one it is super
//! on; the hyperuser may act as any. A check then passes when it passes for the agent
//! or for `P`, and what the request records is `P`'s: the new particle's owner, the
//! grant's granter (`by`), the agent a revoke or chown is judged as.
//!
//! **Grants** are stored only when the agent or `P` has, on the grant's root point, the
//! authority to give it (super for `super`; owner or super for masks and privileges).
//! A stored grant then counts wherever its granter has that authority at the time of a
//! decision, and is ignored elsewhere ([`hyperverse_core::security::access`]): a grant
//! made on behalf of an App before the App owns the point starts counting after a chown.

use std::future::Future;
use std::rc::Rc;

use hyperverse_core::security::{AccessGrant, AccessGrantKind, IndexedAccessGrant, MaskKind};
use hyperverse_core::{Agent, Error, Point, Result, Selector};

use crate::machine::Machine;
use crate::ops::{denied, logged_in};
use crate::protocol::{GrantState, ListedGrant};

/// The most particles `grants` looks at in one request.
pub const MAX_LISTED_POINTS: usize = 10_000;
/// The most grants `grants` answers with in one request (each costs an access decision
/// for its state).
pub const MAX_LISTED_GRANTS: usize = 4096;

/// The session's agent, and the particle it acts as (itself without `--by`).
#[derive(Debug, Clone)]
pub struct Acting {
    /// Who is logged in.
    pub caller: Agent,
    /// Who the request acts as.
    pub acting_as: Agent,
}

impl Acting {
    /// `caller` acting as `by` (itself when `None`): `Forbidden` unless it fully
    /// controls `by`.
    pub async fn new(machine: &Machine, caller: &Agent, by: Option<Point>) -> Result<Acting> {
        let acting = |acting_as: Agent| Acting {
            caller: caller.clone(),
            acting_as,
        };
        let Some(by) = by else {
            return Ok(acting(caller.clone()));
        };
        logged_in(machine, caller, &by)?;
        if *caller == Agent::HyperUser || caller.point() == by {
            return Ok(acting(Agent::from_point(by)));
        }
        let controls = match machine.registry.access(caller, &by).await {
            Ok(access) => access.is_owner() || access.is_super(),
            Err(Error::NotFound(_)) => false,
            Err(e) => return Err(e),
        };
        if !controls {
            let why = Error::forbidden(format!(
                "may not act as {by}: that takes owning it or being super on it"
            ));
            return Err(denied(machine, caller, &by, why));
        }
        Ok(acting(Agent::from_point(by)))
    }

    /// The point recorded as the request's doer: owner, granter.
    pub fn point(&self) -> Point {
        self.acting_as.point()
    }

    /// Runs `check` for the caller and, when it is forbidden and the request acts as
    /// another particle, for that particle; the first success, or the caller's refusal.
    pub async fn either<'a, T, F, Fut>(&'a self, check: F) -> Result<T>
    where
        F: Fn(&'a Agent) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        match check(&self.caller).await {
            Err(Error::Forbidden(why)) if self.acting_as != self.caller => {
                match check(&self.acting_as).await {
                    Err(Error::Forbidden(_)) => Err(Error::Forbidden(why)),
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// Stores `kind` on `on` to `to`, made by the particle the request acts as.
pub async fn grant(
    machine: &Rc<Machine>,
    acting: &Acting,
    kind: AccessGrantKind,
    on: Selector,
    to: Selector,
) -> Result<hyperverse_core::security::GrantId> {
    if let AccessGrantKind::PermissionsMask(mask) = &kind
        && mask.kind == MaskKind::Or
        && mask.permissions == hyperverse_core::security::Permissions::none()
    {
        return Err(Error::bad_request(format!(
            "granting {mask} gives nothing: upper-case letters are the rights given \
             (+CSD-RWX gives all, rwx-style lower case gives those listed)"
        )));
    }
    let grant = AccessGrant {
        kind,
        on_point: on,
        to_point: to,
        by_particle: acting.point(),
    };
    acting.either(|a| may_give(machine, a, &grant)).await?;
    let id = machine.registry.grant(&grant).await?;
    machine.invalidate(Vec::new());
    Ok(id)
}

/// A grant is stored only when `agent` has the authority to give it on the grant's
/// root point (see the module doc); never by an anonymous agent.
async fn may_give(machine: &Machine, agent: &Agent, grant: &AccessGrant) -> Result<()> {
    let root = grant.on_point.root_point();
    match agent {
        Agent::HyperUser => return Ok(()),
        Agent::Anonymous => {
            let why = Error::forbidden("an anonymous agent may not grant; log in");
            return Err(denied(machine, agent, &root, why));
        }
        Agent::Point(_) => {}
    }
    let access = machine.registry.access(agent, &root).await?;
    if access.may_give(&grant.kind) {
        return Ok(());
    }
    let why = Error::forbidden(format!(
        "may not grant {} here: it has {access}, and {}",
        grant.kind,
        needs(&grant.kind)
    ));
    Err(denied(machine, agent, &root, why))
}

fn needs(kind: &AccessGrantKind) -> &'static str {
    match kind {
        AccessGrantKind::Super => "granting super takes super",
        _ => "granting takes owning the point or super on it",
    }
}

/// Removes grant `id` as the caller or the particle it acts as.
pub async fn revoke(
    machine: &Rc<Machine>,
    acting: &Acting,
    id: &hyperverse_core::security::GrantId,
) -> Result<()> {
    acting
        .either(|a| machine.registry.remove_access(id, a))
        .await?;
    machine.invalidate(Vec::new());
    Ok(())
}

/// Makes `owner` the owner of the particles matching `on`; super on each is needed.
pub async fn chown(
    machine: &Rc<Machine>,
    acting: &Acting,
    on: &Selector,
    owner: &Point,
) -> Result<u64> {
    logged_in(machine, &acting.caller, &on.root_point())?;
    if *owner != Point::hyperuser() {
        machine.registry.record(owner).await.map_err(|e| match e {
            Error::NotFound(_) => Error::not_found(format!("the new owner {owner}")),
            other => other,
        })?;
    }
    let changed = acting
        .either(|a| machine.registry.chown(on, owner, a))
        .await
        .map_err(|e| match e {
            Error::Forbidden(why) => {
                machine.metrics.access_denied.inc();
                Error::Forbidden(why)
            }
            other => other,
        })?;
    machine.invalidate(Vec::new());
    Ok(changed)
}

/// The grants indexed at the particles matching `selector` on which `agent` has `r`
/// (the hyperuser: all), ordered by id, each with whether it counts at its root.
pub async fn list(
    machine: &Machine,
    agent: &Agent,
    selector: &Selector,
) -> Result<Vec<ListedGrant>> {
    logged_in(machine, agent, &selector.root_point())?;
    let stubs = machine.registry.select(selector).await?;
    if stubs.len() > MAX_LISTED_POINTS {
        return Err(Error::bad_request(format!(
            "{selector} matches {} particles; grants are listed for at most \
             {MAX_LISTED_POINTS} at once: narrow the selector",
            stubs.len()
        )));
    }
    let mut listed = Vec::new();
    for stub in stubs {
        let grants = match machine.registry.grants_at(&stub.point).await {
            Ok(grants) => grants,
            Err(Error::NotFound(_)) => continue, // deleted meanwhile
            Err(e) => return Err(e),
        };
        if grants.is_empty() || !may_read(machine, agent, &stub.point).await? {
            continue;
        }
        if listed.len() + grants.len() > MAX_LISTED_GRANTS {
            return Err(Error::bad_request(format!(
                "{selector} holds more than {MAX_LISTED_GRANTS} grants: list fewer at once \
                 (narrow the selector)"
            )));
        }
        for grant in grants {
            let state = state(machine, &grant).await?;
            listed.push(ListedGrant {
                id: grant.id,
                grant: grant.grant,
                state,
            });
        }
    }
    listed.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(listed)
}

async fn may_read(machine: &Machine, agent: &Agent, point: &Point) -> Result<bool> {
    if *agent == Agent::HyperUser {
        return Ok(true);
    }
    match machine.registry.access(agent, point).await {
        Ok(access) => Ok(access.permissions().particle.read),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `grant` counts at its root point now, and why not.
async fn state(machine: &Machine, grant: &IndexedAccessGrant) -> Result<GrantState> {
    let by = &grant.grant.by_particle;
    let root = &grant.id.root;
    let access = match machine
        .registry
        .access(&Agent::from_point(by.clone()), root)
        .await
    {
        Ok(access) => access,
        Err(Error::NotFound(_)) => {
            return Ok(GrantState::Ignored(format!("{root} is gone")));
        }
        Err(e) => return Err(e),
    };
    if access.may_give(&grant.grant.kind) {
        return Ok(GrantState::Counting);
    }
    Ok(GrantState::Ignored(format!(
        "its granter {by} has {access} on {root}: {}",
        needs(&grant.grant.kind)
    )))
}

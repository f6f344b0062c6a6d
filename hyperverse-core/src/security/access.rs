//! The access algorithm: what an agent may do on a point, as a pure function over a
//! source of particle facts and grants.
//!
//! 1. The hyperuser has `Super` (`SuperOwner` on what it owns).
//! 2. The owner of the point (its record's `owner`) has `Owner`.
//! 3. Grants are gathered from the point's ancestors, from `ROOT` down to the point
//!    itself (a grant is indexed at the root of its `on_point` selector). A grant
//!    applies when its `on_point` matches the point, its `to_point` matches the agent,
//!    and its granter has, on this same point, the access it grants:
//!    - `Super` needs a super granter;
//!    - `Privilege(p)` needs a granter with `p` (owners and supers have every privilege);
//!    - an `Or` mask needs a granter whose rights contain the mask;
//!    - an `And` mask (a restriction) needs a granter that owns the point or is super.
//!
//!    The granter's access is found by the same algorithm; a granter already being
//!    evaluated up the chain (a cycle) counts as having no grants, so a ring of particles
//!    granting each other gains nothing.
//! 4. An applying `Super` grant gives `Super` (or `SuperOwner` to an owner).
//!    Otherwise an owner has `Owner` (masks never reduce an owner). Otherwise the rights
//!    are the union of every applying `Or` mask, intersected with every applying `And`
//!    mask: Or-masks add, And-masks restrict, wherever they sit on the path.

use std::collections::BTreeSet;

use super::{Access, AccessGrantKind, EnumeratedAccess, IndexedAccessGrant, MaskKind, Permissions};
use crate::error::{Error, Result};
use crate::kind::Kind;
use crate::point::Point;
use crate::wave::Agent;

/// How deep grant-by-grant chains are followed before a granter counts as powerless.
pub const MAX_GRANT_CHAIN: usize = 8;

/// What the algorithm needs to know of a particle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParticleFacts {
    /// Its kind (for selectors with kind filters).
    pub kind: Kind,
    /// Its owner.
    pub owner: Point,
}

/// Where the algorithm reads particles and grants. The registry backends implement it
/// over data they gathered beforehand: the records and grants along the target's
/// ancestors, then the records along the agent's and every granter's ancestors.
pub trait AccessSource {
    /// The facts of `point`, if it is registered. `ROOT` need not be: it is the hyperuser's.
    fn particle(&self, point: &Point) -> Option<ParticleFacts>;
    /// The grants indexed at `point` (those whose `on_point` selector is rooted there).
    fn grants_at(&self, point: &Point) -> Vec<IndexedAccessGrant>;
}

/// What `agent` may do on `on`. Fails with `NotFound` when `on` is not registered.
pub fn access(agent: &Agent, on: &Point, source: &impl AccessSource) -> Result<Access> {
    let target = Target::gather(on, source)?;
    Ok(target.access_of(&agent.point(), source, &mut Vec::new()))
}

/// The kinds along `point`'s path (`kinds[i]` for its first `i + 1` segments), stopping
/// at the first prefix that is not registered.
pub fn kinds_along(point: &Point, source: &impl AccessSource) -> Vec<Kind> {
    (1..=point.depth())
        .map_while(|len| source.particle(&point.prefix(len)).map(|f| f.kind))
        .collect()
}

fn facts(point: &Point, source: &impl AccessSource) -> Option<ParticleFacts> {
    source.particle(point).or_else(|| {
        point.is_root().then(|| ParticleFacts {
            kind: Kind::Root,
            owner: Point::hyperuser(),
        })
    })
}

/// The point whose access is asked, with what is known about it.
struct Target<'a> {
    point: &'a Point,
    kinds: Vec<Kind>,
    owner: Point,
    /// Candidate grants, from `ROOT` down to the point.
    grants: Vec<IndexedAccessGrant>,
}

impl<'a> Target<'a> {
    fn gather(point: &'a Point, source: &impl AccessSource) -> Result<Self> {
        let facts =
            facts(point, source).ok_or_else(|| Error::not_found(format!("particle {point}")))?;
        let mut ancestors: Vec<Point> = point.ancestors().collect();
        ancestors.reverse();
        Ok(Target {
            point,
            kinds: kinds_along(point, source),
            owner: facts.owner,
            grants: ancestors.iter().flat_map(|a| source.grants_at(a)).collect(),
        })
    }

    fn access_of(
        &self,
        agent: &Point,
        source: &impl AccessSource,
        visiting: &mut Vec<Point>,
    ) -> Access {
        let owner = *agent == self.owner;
        if *agent == Point::hyperuser() {
            return if owner {
                Access::SuperOwner
            } else {
                Access::Super
            };
        }
        if visiting.contains(agent) || visiting.len() >= MAX_GRANT_CHAIN {
            return if owner { Access::Owner } else { Access::none() };
        }
        visiting.push(agent.clone());
        let agent_kinds = kinds_along(agent, source);

        let mut is_super = false;
        let mut privileges = BTreeSet::new();
        let mut added = Permissions::none();
        let mut restricted = Permissions::full();
        for indexed in &self.grants {
            let grant = &indexed.grant;
            if !grant.on_point.matches(self.point, &self.kinds)
                || !grant.to_point.matches(agent, &agent_kinds)
            {
                continue;
            }
            let granter = self.access_of(&grant.by_particle, source, visiting);
            match &grant.kind {
                AccessGrantKind::Super if granter.is_super() => is_super = true,
                AccessGrantKind::Privilege(p) if granter.has_privilege(p) => {
                    privileges.insert(p.clone());
                }
                AccessGrantKind::PermissionsMask(mask) => match mask.kind {
                    MaskKind::Or if granter.permissions().contains(&mask.permissions) => {
                        added = added.or(&mask.permissions);
                    }
                    MaskKind::And if granter.is_owner() || granter.is_super() => {
                        restricted = restricted.and(&mask.permissions);
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        visiting.pop();

        match (is_super, owner) {
            (true, true) => Access::SuperOwner,
            (true, false) => Access::Super,
            (false, true) => Access::Owner,
            (false, false) => Access::Enumerated(EnumeratedAccess {
                privileges,
                permissions: added.and(&restricted),
            }),
        }
    }
}

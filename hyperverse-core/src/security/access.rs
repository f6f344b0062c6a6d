//! The access algorithm: what an agent may do on a point, as a pure function over a
//! source of particle facts and grants. It is the seed's (Starlane's
//! `cosmic-registry-postgres` `access`), with the granter rule applied to every kind of
//! grant:
//!
//! 1. The hyperuser has `Super` (`SuperOwner` on what it owns).
//! 2. Grants are gathered from the point's ancestors, from `ROOT` down to the point
//!    itself (a grant is indexed at the root of its `on_point` selector). A grant is
//!    *addressed* to a particle when its `on_point` matches the point and its `to_point`
//!    matches the particle (with the kinds along their paths). It *counts* only when its
//!    granter (`by_particle`) has, on this same point and at the time of the decision,
//!    the authority to give it: super for a `Super` grant; owner or super for a mask or
//!    a privilege. A grant that does not count is ignored, and starts counting when its
//!    granter gains that authority (a `chown` to it, a `Super` grant to it).
//! 3. A counting `Super` grant addressed to the agent gives `Super` (`SuperOwner` to an
//!    owner). Otherwise the owner of the point (its record's `owner`) has `Owner`: full
//!    rights, every privilege; masks never reduce an owner or a super.
//! 4. Otherwise rights start empty: the counting `Or` masks add, then the counting `And`
//!    masks take away — wherever on the path either sits, so a restriction cannot be
//!    undone by an `Or` mask further down. Counting `Privilege` grants add their names.
//!
//! Granters' super depends on `Super` grants too, so who is super is computed as a
//! least fixed point over the agent and every granter on the path, from the hyperuser
//! along `Super` grants: a ring of particles granting each other gains nothing, and the
//! cost is polynomial in the number of grants.

use std::collections::{BTreeSet, HashMap};

use super::{Access, AccessGrantKind, EnumeratedAccess, IndexedAccessGrant, MaskKind, Permissions};
use crate::error::{Error, Result};
use crate::kind::Kind;
use crate::point::Point;
use crate::wave::Agent;

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
    /// The facts of `point`, if it is registered. Roots need not be: they are the
    /// hyperuser's.
    fn particle(&self, point: &Point) -> Option<ParticleFacts>;
    /// The grants indexed at `point` (those whose `on_point` selector is rooted there).
    fn grants_at(&self, point: &Point) -> Vec<IndexedAccessGrant>;
}

/// What `agent` may do on `on`. Fails with `NotFound` when `on` is not registered.
pub fn access(agent: &Agent, on: &Point, source: &impl AccessSource) -> Result<Access> {
    let facts = facts(on, source).ok_or_else(|| Error::not_found(format!("particle {on}")))?;
    let grants = applicable_grants(on, source);
    let agent = agent.point();
    let mut particles: Vec<Point> = vec![agent.clone()];
    for g in &grants {
        if !particles.contains(&g.grant.by_particle) {
            particles.push(g.grant.by_particle.clone());
        }
    }
    let solved = Solver::new(&particles, &grants, &facts.owner, source).solve();
    Ok(solved.access_of(0))
}

/// The grants indexed along `on`'s ancestors (from `ROOT` down) whose `on_point`
/// matches `on`.
pub fn applicable_grants(on: &Point, source: &impl AccessSource) -> Vec<IndexedAccessGrant> {
    let kinds = kinds_along(on, source);
    let mut ancestors: Vec<Point> = on.ancestors().collect();
    ancestors.reverse();
    ancestors
        .iter()
        .flat_map(|a| source.grants_at(a))
        .filter(|g| g.grant.on_point.matches(on, &kinds))
        .collect()
}

/// The [`applicable_grants`] of `on` whose `to_point` matches `to` (all of them when
/// `to` is `None`): what `list_access` answers.
pub fn grants_for(
    on: &Point,
    to: Option<&Point>,
    source: &impl AccessSource,
) -> Vec<IndexedAccessGrant> {
    let grants = applicable_grants(on, source);
    let Some(to) = to else {
        return grants;
    };
    let kinds = kinds_along(to, source);
    grants
        .into_iter()
        .filter(|g| g.grant.to_point.matches(to, &kinds))
        .collect()
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

/// One grant that applies to the target, with its granter as an index into the solver's
/// particles.
struct Edge<'g> {
    kind: &'g AccessGrantKind,
    granter: usize,
}

/// The decision over the agent (index 0) and every granter on the target's path.
struct Solver<'g> {
    owner: Vec<bool>,
    /// `inbound[x]`: the grants addressed to particle `x`.
    inbound: Vec<Vec<Edge<'g>>>,
    is_super: Vec<bool>,
}

impl<'g> Solver<'g> {
    fn new(
        particles: &[Point],
        grants: &'g [IndexedAccessGrant],
        owner: &Point,
        source: &impl AccessSource,
    ) -> Self {
        let index: HashMap<&Point, usize> =
            particles.iter().enumerate().map(|(i, p)| (p, i)).collect();
        let inbound = particles
            .iter()
            .map(|particle| {
                let kinds = kinds_along(particle, source);
                grants
                    .iter()
                    .filter(|g| g.grant.to_point.matches(particle, &kinds))
                    .map(|g| Edge {
                        kind: &g.grant.kind,
                        granter: index[&g.grant.by_particle],
                    })
                    .collect()
            })
            .collect();
        Solver {
            owner: particles.iter().map(|p| p == owner).collect(),
            inbound,
            is_super: particles.iter().map(|p| *p == Point::hyperuser()).collect(),
        }
    }

    /// Who is super: the hyperuser, then whoever a super grants `Super`, until nothing
    /// changes (a ring of particles granting each other super gains nothing).
    fn solve(mut self) -> Self {
        let mut changed = true;
        while changed {
            changed = false;
            for x in 0..self.owner.len() {
                if !self.is_super[x]
                    && self.inbound[x].iter().any(|e| {
                        matches!(e.kind, AccessGrantKind::Super) && self.is_super[e.granter]
                    })
                {
                    self.is_super[x] = true;
                    changed = true;
                }
            }
        }
        self
    }

    /// Whether `x` has the authority to give masks and privileges here: it owns the
    /// target or is super on it.
    fn authority(&self, x: usize) -> bool {
        self.owner[x] || self.is_super[x]
    }

    fn access_of(&self, x: usize) -> Access {
        match (self.is_super[x], self.owner[x]) {
            (true, true) => return Access::SuperOwner,
            (true, false) => return Access::Super,
            (false, true) => return Access::Owner,
            (false, false) => {}
        }
        let mut added = Permissions::none();
        let mut kept = Permissions::full();
        let mut privileges = BTreeSet::new();
        for edge in self.inbound[x].iter().filter(|e| self.authority(e.granter)) {
            match edge.kind {
                AccessGrantKind::PermissionsMask(mask) if mask.kind == MaskKind::Or => {
                    added = added.or(&mask.permissions);
                }
                AccessGrantKind::PermissionsMask(mask) => kept = kept.and(&mask.permissions),
                AccessGrantKind::Privilege(p) => {
                    privileges.insert(p.clone());
                }
                AccessGrantKind::Super => {}
            }
        }
        Access::Enumerated(EnumeratedAccess {
            privileges,
            permissions: added.and(&kept),
        })
    }
}

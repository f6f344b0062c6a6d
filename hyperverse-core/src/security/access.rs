//! The access algorithm: what an agent may do on a point, as a pure function over a
//! source of particle facts and grants.
//!
//! 1. The hyperuser has `Super` (`SuperOwner` on what it owns).
//! 2. The owner of the point (its record's `owner`) has `Owner`.
//! 3. Grants are gathered from the point's ancestors, from `ROOT` down to the point
//!    itself (a grant is indexed at the root of its `on_point` selector). A grant is
//!    *addressed* to a particle when its `on_point` matches the point and its `to_point`
//!    matches the particle (with the kinds along their paths). It *applies* when, in
//!    addition, its granter has on this same point the access it grants:
//!    - `Super` needs a super granter;
//!    - `Privilege(p)` needs a granter with `p` (owners and supers have every privilege);
//!    - an `Or` mask needs a granter whose rights contain the whole mask;
//!    - an `And` mask (a restriction) needs a granter that owns the point or is super.
//! 4. An applying `Super` grant gives `Super` (or `SuperOwner` to an owner). Otherwise an
//!    owner has `Owner` (masks never reduce an owner or a super). Otherwise the rights are
//!    the union of the applying `Or` masks, intersected with every applying `And` mask:
//!    Or-masks add, And-masks restrict, wherever on the path they sit, and a restricted
//!    particle can pass on only what it keeps.
//!
//! Granters' access depends on grants too, so the answer is computed as a least fixed
//! point over the agent and every granter on the path, in three monotone steps: who is
//! super (from the hyperuser along `Super` grants); each particle's restriction (the
//! `And` masks of owners and supers, fixed once supers are known); then rights and
//! privileges, growing from nothing until they stop changing. Rights reach a particle
//! only along a chain that starts at an owner or a super, so a ring of particles
//! granting each other gains nothing, and the cost is polynomial in the number of
//! grants (no chain is walked twice).

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

/// The fixed-point computation over the agent (index 0) and every granter.
struct Solver<'g> {
    owner: Vec<bool>,
    /// `inbound[x]`: the grants addressed to particle `x`.
    inbound: Vec<Vec<Edge<'g>>>,
    is_super: Vec<bool>,
    restriction: Vec<Permissions>,
    rights: Vec<Permissions>,
    privileges: Vec<BTreeSet<String>>,
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
        let n = particles.len();
        Solver {
            owner: particles.iter().map(|p| p == owner).collect(),
            inbound,
            is_super: particles.iter().map(|p| *p == Point::hyperuser()).collect(),
            restriction: vec![Permissions::full(); n],
            rights: vec![Permissions::none(); n],
            privileges: vec![BTreeSet::new(); n],
        }
    }

    /// Owners and supers hold every right and privilege.
    fn unlimited(&self, x: usize) -> bool {
        self.owner[x] || self.is_super[x]
    }

    fn solve(mut self) -> Self {
        let n = self.owner.len();
        // Step 1: supers, from the hyperuser along Super grants.
        let mut changed = true;
        while changed {
            changed = false;
            for x in 0..n {
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
        // Step 2: restrictions, from owners and supers only.
        for x in 0..n {
            for edge in &self.inbound[x] {
                if let AccessGrantKind::PermissionsMask(mask) = edge.kind
                    && mask.kind == MaskKind::And
                    && self.unlimited(edge.granter)
                {
                    self.restriction[x] = self.restriction[x].and(&mask.permissions);
                }
            }
        }
        // Step 3: rights and privileges, grown to their least fixed point.
        let mut changed = true;
        while changed {
            changed = false;
            for x in 0..n {
                if self.unlimited(x) {
                    continue;
                }
                let mut added = Permissions::none();
                let mut privileges = BTreeSet::new();
                for edge in &self.inbound[x] {
                    match edge.kind {
                        AccessGrantKind::PermissionsMask(mask)
                            if mask.kind == MaskKind::Or
                                && self.rights_of(edge.granter).contains(&mask.permissions) =>
                        {
                            added = added.or(&mask.permissions);
                        }
                        AccessGrantKind::Privilege(p) if self.has_privilege(edge.granter, p) => {
                            privileges.insert(p.clone());
                        }
                        _ => {}
                    }
                }
                let rights = added.and(&self.restriction[x]);
                if rights != self.rights[x] || privileges != self.privileges[x] {
                    self.rights[x] = rights;
                    self.privileges[x] = privileges;
                    changed = true;
                }
            }
        }
        self
    }

    fn rights_of(&self, x: usize) -> Permissions {
        if self.unlimited(x) {
            Permissions::full()
        } else {
            self.rights[x]
        }
    }

    fn has_privilege(&self, x: usize, privilege: &str) -> bool {
        self.unlimited(x) || self.privileges[x].contains(privilege)
    }

    fn access_of(&self, x: usize) -> Access {
        match (self.is_super[x], self.owner[x]) {
            (true, true) => Access::SuperOwner,
            (true, false) => Access::Super,
            (false, true) => Access::Owner,
            (false, false) => Access::Enumerated(EnumeratedAccess {
                privileges: self.privileges[x].clone(),
                permissions: self.rights[x],
            }),
        }
    }
}

//! The access algorithm (`security::access`) on hand-built worlds: an in-memory
//! `AccessSource` of particle facts and grants, scenario by scenario, plus property tests
//! over random small trees and grant sets.

use std::cell::Cell;
use std::collections::{BTreeSet, HashMap};
use std::fmt;

use hyperverse_core::security::access::kinds_along;

/// A chain length that used to hit the old recursion cut-off.
const LONG_CHAIN: usize = 8;
use hyperverse_core::security::{
    Access, AccessGrant, AccessGrantKind, AccessSource, ChildPerms, EnumeratedAccess, GrantId,
    IndexedAccessGrant, MaskKind, ParticleFacts, ParticlePerms, Permissions, PermissionsMask,
    access,
};
use hyperverse_core::{Agent, Error, Kind, Point, Selector};
use proptest::prelude::*;

// --- The world: an in-memory AccessSource ---------------------------------------------

/// Particles and grants in memory. Counts its lookups, to measure the algorithm's work.
#[derive(Default, Clone)]
struct World {
    particles: HashMap<Point, ParticleFacts>,
    grants: HashMap<Point, Vec<IndexedAccessGrant>>,
    lookups: Cell<u64>,
}

impl World {
    fn new() -> Self {
        Self::default()
    }

    /// Registers `point` as a `kind` owned by `owner`.
    fn add(&mut self, point: &str, kind: Kind, owner: &str) -> &mut Self {
        self.particles.insert(
            p(point),
            ParticleFacts {
                kind,
                owner: p(owner),
            },
        );
        self
    }

    /// Stores `grant` at its `on_point`'s root, with the next sequence number there.
    fn put(&mut self, grant: AccessGrant) -> GrantId {
        let root = grant.on_point.root_point();
        let at = self.grants.entry(root.clone()).or_default();
        let id = GrantId {
            root,
            seq: at.len() as u64 + 1,
        };
        at.push(IndexedAccessGrant {
            id: id.clone(),
            grant,
        });
        id
    }

    /// Stores `kind` on `on` to `to` by `by`.
    fn grant(&mut self, kind: AccessGrantKind, on: &str, to: &str, by: &str) -> GrantId {
        self.put(AccessGrant {
            kind,
            on_point: sel(on),
            to_point: sel(to),
            by_particle: p(by),
        })
    }

    /// What `agent` may do on `on`.
    fn access(&self, agent: &Agent, on: &str) -> Access {
        access(agent, &p(on), self).unwrap_or_else(|e| panic!("access of {agent} on {on}: {e}"))
    }

    /// What the particle `agent` may do on `on`.
    fn access_of(&self, agent: &str, on: &str) -> Access {
        self.access(&user(agent), on)
    }

    /// Every grant, with its id.
    fn all_grants(&self) -> Vec<IndexedAccessGrant> {
        self.grants.values().flatten().cloned().collect()
    }

    /// The same world without its `And` masks.
    fn without_and_masks(&self) -> World {
        let mut world = self.clone();
        for grants in world.grants.values_mut() {
            grants.retain(|g| !is_mask(&g.grant.kind, MaskKind::And));
        }
        world
    }
}

/// Sorted, one line per particle or grant: what a failing property case prints.
impl fmt::Debug for World {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut particles: Vec<_> = self.particles.iter().collect();
        particles.sort_by(|a, b| a.0.cmp(b.0));
        for (point, facts) in particles {
            writeln!(f, "{point} <{}> owned by {}", facts.kind, facts.owner)?;
        }
        let mut grants = self.all_grants();
        grants.sort_by(|a, b| a.id.cmp(&b.id));
        for g in grants {
            let kind = match &g.grant.kind {
                AccessGrantKind::Super => "super".to_string(),
                AccessGrantKind::Privilege(name) => format!("privilege {name}"),
                AccessGrantKind::PermissionsMask(m) => format!("{:?} {}", m.kind, m.permissions),
            };
            writeln!(
                f,
                "{}: {kind} on {} to {} by {}",
                g.id, g.grant.on_point, g.grant.to_point, g.grant.by_particle
            )?;
        }
        Ok(())
    }
}

impl AccessSource for World {
    fn particle(&self, point: &Point) -> Option<ParticleFacts> {
        self.lookups.set(self.lookups.get() + 1);
        self.particles.get(point).cloned()
    }

    fn grants_at(&self, point: &Point) -> Vec<IndexedAccessGrant> {
        self.grants.get(point).cloned().unwrap_or_default()
    }
}

// --- Helpers --------------------------------------------------------------------------

const HYPERUSER: &str = "GLOBAL::hyperuser";
const ANONYMOUS: &str = "GLOBAL::anonymous";
const ALICE: &str = "localhost:users:alice";
const BOB: &str = "localhost:users:bob";
const CAROL: &str = "localhost:users:carol";
const DAVE: &str = "localhost:users:dave";
const ADMIN: &str = "localhost:users:admin";

fn p(s: &str) -> Point {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn sel(s: &str) -> Selector {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn perms(s: &str) -> Permissions {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

fn user(s: &str) -> Agent {
    Agent::from_point(p(s))
}

fn or(s: &str) -> AccessGrantKind {
    AccessGrantKind::PermissionsMask(PermissionsMask {
        kind: MaskKind::Or,
        permissions: perms(s),
    })
}

fn and(s: &str) -> AccessGrantKind {
    AccessGrantKind::PermissionsMask(PermissionsMask {
        kind: MaskKind::And,
        permissions: perms(s),
    })
}

fn privilege(name: &str) -> AccessGrantKind {
    AccessGrantKind::Privilege(name.to_string())
}

fn is_mask(kind: &AccessGrantKind, which: MaskKind) -> bool {
    matches!(kind, AccessGrantKind::PermissionsMask(m) if m.kind == which)
}

/// `Access::Enumerated` with `permissions` and no privileges.
fn rights(permissions: &str) -> Access {
    enumerated(permissions, &[])
}

fn enumerated(permissions: &str, privileges: &[&str]) -> Access {
    Access::Enumerated(EnumeratedAccess {
        privileges: privileges.iter().map(|s| s.to_string()).collect(),
        permissions: perms(permissions),
    })
}

/// The tree most scenarios use:
///
/// ```text
/// localhost                 Space     hyperuser
/// localhost:users           UserBase  hyperuser
/// localhost:users:{alice,bob,carol,dave,admin}  User  hyperuser
/// localhost:app             App       alice
/// localhost:app:db          Base      alice
/// localhost:app:db:table    Base      alice
/// localhost:other           Base      hyperuser
/// ```
fn world() -> World {
    let mut w = World::new();
    w.add("localhost", Kind::Space, HYPERUSER)
        .add("localhost:users", Kind::UserBase, HYPERUSER)
        .add("localhost:app", Kind::App, ALICE)
        .add("localhost:app:db", Kind::Base, ALICE)
        .add("localhost:app:db:table", Kind::Base, ALICE)
        .add("localhost:other", Kind::Base, HYPERUSER);
    for u in [ALICE, BOB, CAROL, DAVE, ADMIN] {
        w.add(u, Kind::User, HYPERUSER);
    }
    w
}

// --- Hyperuser --------------------------------------------------------------------------

#[test]
fn hyperuser_is_super_on_what_it_does_not_own() {
    let w = world();
    assert_eq!(w.access(&Agent::HyperUser, "localhost:app"), Access::Super);
    assert_eq!(
        w.access(&Agent::HyperUser, "localhost:app:db:table"),
        Access::Super
    );
}

#[test]
fn hyperuser_is_super_owner_on_what_it_owns() {
    let w = world();
    assert_eq!(w.access(&Agent::HyperUser, "localhost"), Access::SuperOwner);
    assert_eq!(w.access(&Agent::HyperUser, BOB), Access::SuperOwner);
    // The point form of the hyperuser is the hyperuser.
    assert_eq!(
        w.access(&Agent::Point(Point::hyperuser()), "localhost"),
        Access::SuperOwner
    );
}

#[test]
fn root_is_owned_by_the_hyperuser_even_when_the_source_does_not_list_it() {
    let w = world();
    assert!(!w.particles.contains_key(&Point::root()));
    assert_eq!(w.access(&Agent::HyperUser, "ROOT"), Access::SuperOwner);
    assert_eq!(w.access_of(ALICE, "ROOT"), Access::none());
    // The root of another route is a root too.
    assert_eq!(
        w.access(&Agent::HyperUser, "GLOBAL::ROOT"),
        Access::SuperOwner
    );
}

#[test]
fn a_listed_root_keeps_its_listed_owner() {
    let mut w = world();
    w.add("ROOT", Kind::Root, ALICE);
    assert_eq!(w.access_of(ALICE, "ROOT"), Access::Owner);
    assert_eq!(w.access(&Agent::HyperUser, "ROOT"), Access::Super);
}

#[test]
fn hyperuser_is_not_restricted_by_and_masks() {
    let mut w = world();
    w.grant(and("csd-rwx"), "+:**", "GLOBAL::*", HYPERUSER);
    w.grant(
        and("csd-rwx"),
        "localhost:app:+:**",
        "GLOBAL::hyperuser",
        ALICE,
    );
    assert_eq!(w.access(&Agent::HyperUser, "localhost:app"), Access::Super);
    assert_eq!(w.access(&Agent::HyperUser, "localhost"), Access::SuperOwner);
}

// --- Owners and strangers ---------------------------------------------------------------

#[test]
fn the_owner_has_owner_access() {
    let w = world();
    assert_eq!(w.access_of(ALICE, "localhost:app"), Access::Owner);
    assert_eq!(w.access_of(ALICE, "localhost:app:db"), Access::Owner);
}

#[test]
fn a_stranger_without_grants_has_nothing() {
    let w = world();
    let none = w.access_of(BOB, "localhost:app");
    assert_eq!(none, Access::none());
    assert_eq!(none, rights("csd-rwx"));
    assert_eq!(none.to_string(), "csd-rwx");
    assert_eq!(w.access(&Agent::Anonymous, "localhost:app"), Access::none());
}

#[test]
fn owning_a_parent_gives_nothing_on_a_child_owned_by_another() {
    let mut w = world();
    w.add("localhost:app:bobs", Kind::Base, BOB);
    assert_eq!(w.access_of(ALICE, "localhost:app:bobs"), Access::none());
    assert_eq!(w.access_of(BOB, "localhost:app:bobs"), Access::Owner);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

// --- Or grants ----------------------------------------------------------------------------

#[test]
fn an_or_grant_by_the_owner_gives_exactly_its_permissions() {
    let mut w = world();
    w.grant(or("cSd-RwX"), "localhost:app", BOB, ALICE);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-RwX"));
    // Only on the point it names, only to the agent it names.
    assert_eq!(w.access_of(BOB, "localhost:app:db"), Access::none());
    assert_eq!(w.access_of(CAROL, "localhost:app"), Access::none());
}

#[test]
fn an_or_grant_by_the_hyperuser_gives_exactly_its_permissions() {
    let mut w = world();
    w.grant(or("csd-RWx"), "localhost:app:db", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("csd-RWx"));
}

#[test]
fn two_or_grants_union() {
    let mut w = world();
    w.grant(or("Csd-Rwx"), "localhost:app", BOB, ALICE);
    w.grant(or("csd-rWx"), "localhost:app:+:**", "**<User>", HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("Csd-RWx"));
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("csd-rWx"));
}

#[test]
fn an_or_grant_by_a_particle_without_access_is_ignored() {
    let mut w = world();
    w.grant(or("csd-RWX"), "localhost:app", BOB, CAROL);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

#[test]
fn rights_held_by_a_grant_are_no_authority_to_grant() {
    let mut w = world();
    w.grant(or("CSD-RWX"), "localhost:app", CAROL, ALICE);
    // Carol holds every right, by Alice's grant, but neither owns nor is super: what
    // she grants is ignored, within her rights or beyond them.
    w.grant(or("csd-Rwx"), "localhost:app", BOB, CAROL);
    w.grant(or("csd-RWx"), "localhost:app", DAVE, CAROL);
    assert_eq!(w.access_of(CAROL, "localhost:app"), rights("CSD-RWX"));
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
    assert_eq!(w.access_of(DAVE, "localhost:app"), Access::none());
}

#[test]
fn a_particle_cannot_grant_itself_more() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:app", CAROL, ALICE);
    w.grant(or("csd-RWX"), "localhost:app", CAROL, CAROL);
    w.grant(or("csd-Rwx"), "localhost:app", CAROL, CAROL);
    assert_eq!(w.access_of(CAROL, "localhost:app"), rights("csd-Rwx"));
}

#[test]
fn a_granter_is_judged_on_the_target_point_not_where_it_has_rights() {
    let mut w = world();
    // Alice owns localhost:app but not localhost:other; her wide grant counts only on hers.
    w.grant(or("CSD-RWX"), "localhost:**", BOB, ALICE);
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("CSD-RWX"));
    assert_eq!(w.access_of(BOB, "localhost:other"), Access::none());
    assert_eq!(w.access_of(BOB, "localhost:users"), Access::none());
}

// --- Chains and cycles ------------------------------------------------------------------

#[test]
fn a_grant_counts_once_its_granter_owns_the_point() {
    let mut w = world();
    w.grant(or("cSd-Rwx"), "localhost:app", BOB, CAROL);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
    // A chown to Carol: her grant starts counting, with nothing stored again.
    w.add("localhost:app", Kind::App, CAROL);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-Rwx"));
}

#[test]
fn a_chain_of_grants_gives_only_its_first_link() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:app", ADMIN, ALICE);
    w.grant(or("csd-Rwx"), "localhost:app", DAVE, ADMIN);
    w.grant(or("csd-Rwx"), "localhost:app", CAROL, DAVE);
    assert_eq!(w.access_of(ADMIN, "localhost:app"), rights("csd-Rwx"));
    assert_eq!(w.access_of(DAVE, "localhost:app"), Access::none());
    assert_eq!(w.access_of(CAROL, "localhost:app"), Access::none());
}

#[test]
fn a_chain_breaks_where_a_link_is_powerless() {
    let mut w = world();
    // Dave never got anything: Carol's rights from him, and Bob's from her, are void.
    w.grant(or("csd-Rwx"), "localhost:app", CAROL, DAVE);
    w.grant(or("csd-Rwx"), "localhost:app", BOB, CAROL);
    assert_eq!(w.access_of(CAROL, "localhost:app"), Access::none());
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

#[test]
fn a_chain_of_any_length_from_the_owner_gives_the_last_link_nothing() {
    // owner -> m1 -> ... -> m(n-1) -> bob: n grants; only the owner's counts.
    let chain = |n: usize| {
        let mut w = world();
        let links: Vec<String> = (1..n).map(|i| format!("localhost:users:m{i}")).collect();
        for link in &links {
            w.add(link, Kind::User, HYPERUSER);
        }
        let mut granter = ALICE.to_string();
        for link in links.iter().rev() {
            w.grant(or("csd-Rwx"), "localhost:app", link, &granter);
            granter = link.clone();
        }
        w.grant(or("csd-Rwx"), "localhost:app", BOB, &granter);
        w.access_of(BOB, "localhost:app")
    };
    assert_eq!(chain(1), rights("csd-Rwx"));
    assert_eq!(chain(2), Access::none());
    assert_eq!(chain(3 * LONG_CHAIN), Access::none());
}

#[test]
fn a_cycle_of_particles_granting_each_other_gains_nothing() {
    let mut w = world();
    w.grant(or("CSD-RWX"), "localhost:app", CAROL, BOB);
    w.grant(or("CSD-RWX"), "localhost:app", BOB, CAROL);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
    assert_eq!(w.access_of(CAROL, "localhost:app"), Access::none());
    // A longer ring, with privileges and super too.
    w.grant(or("CSD-RWX"), "localhost:app", DAVE, CAROL);
    w.grant(or("CSD-RWX"), "localhost:app", BOB, DAVE);
    w.grant(AccessGrantKind::Super, "localhost:app", BOB, DAVE);
    w.grant(AccessGrantKind::Super, "localhost:app", DAVE, BOB);
    w.grant(privilege("p"), "localhost:app", BOB, DAVE);
    w.grant(privilege("p"), "localhost:app", DAVE, BOB);
    for agent in [BOB, CAROL, DAVE] {
        assert_eq!(
            w.access_of(agent, "localhost:app"),
            Access::none(),
            "{agent}"
        );
    }
}

#[test]
fn a_cycle_fed_from_outside_passes_on_nothing() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:app", CAROL, ALICE);
    w.grant(or("csd-RWX"), "localhost:app", BOB, CAROL);
    w.grant(or("csd-RWX"), "localhost:app", CAROL, BOB);
    assert_eq!(w.access_of(CAROL, "localhost:app"), rights("csd-Rwx"));
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

// --- And masks -------------------------------------------------------------------------------

#[test]
fn an_and_mask_by_the_owner_restricts_an_or_grant() {
    let mut w = world();
    w.grant(or("CSD-RWX"), "localhost:app", BOB, ALICE);
    w.grant(and("cSd-Rwx"), "localhost:app", BOB, ALICE);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-Rwx"));
}

#[test]
fn an_and_mask_by_the_hyperuser_restricts_an_or_grant() {
    let mut w = world();
    w.grant(or("CSD-RWX"), "localhost:app", BOB, ALICE);
    w.grant(and("csd-RWx"), "localhost:app", "**", HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("csd-RWx"));
}

#[test]
fn an_and_mask_above_the_or_grant_restricts_it() {
    let mut w = world();
    w.grant(and("csd-Rwx"), "localhost:**", "**", HYPERUSER);
    w.grant(or("cSd-RWX"), "localhost:app:db", BOB, ALICE);
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("csd-Rwx"));
}

#[test]
fn an_and_mask_below_the_or_grant_restricts_it() {
    let mut w = world();
    w.grant(or("cSd-RWX"), "localhost:+:**", BOB, HYPERUSER);
    w.grant(and("cSd-rwx"), "localhost:app:db:table", BOB, ALICE);
    assert_eq!(
        w.access_of(BOB, "localhost:app:db:table"),
        rights("cSd-rwx")
    );
    // Only where it applies.
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("cSd-RWX"));
}

#[test]
fn and_masks_intersect() {
    let mut w = world();
    w.grant(or("CSD-RWX"), "localhost:app", BOB, ALICE);
    w.grant(and("CSd-RWx"), "localhost:app", BOB, ALICE);
    w.grant(and("cSD-RwX"), "+:**", "+:**", HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-Rwx"));
}

#[test]
fn an_and_mask_alone_gives_nothing() {
    let mut w = world();
    w.grant(and("CSD-RWX"), "localhost:app", BOB, ALICE);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

#[test]
fn an_and_mask_by_a_powerless_particle_is_ignored() {
    let mut w = world();
    w.grant(or("cSd-RWx"), "localhost:app", BOB, ALICE);
    w.grant(and("csd-rwx"), "localhost:app", BOB, CAROL);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-RWx"));
}

#[test]
fn an_and_mask_by_a_particle_with_full_rights_but_not_owner_is_ignored() {
    let mut w = world();
    w.grant(or("CSD-RWX"), "localhost:app", CAROL, ALICE);
    w.grant(or("cSd-RWx"), "localhost:app", BOB, ALICE);
    w.grant(and("csd-rwx"), "localhost:app", BOB, CAROL);
    assert_eq!(w.access_of(CAROL, "localhost:app"), rights("CSD-RWX"));
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-RWx"));
}

#[test]
fn an_and_mask_by_a_super_granted_particle_restricts() {
    let mut w = world();
    w.grant(AccessGrantKind::Super, "localhost:+:**", ADMIN, HYPERUSER);
    w.grant(or("cSd-RWx"), "localhost:app", BOB, ALICE);
    w.grant(and("cSd-rwx"), "localhost:app", BOB, ADMIN);
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("cSd-rwx"));
}

#[test]
fn and_never_restricts_an_owner() {
    let mut w = world();
    w.grant(and("csd-rwx"), "+:**", "**", HYPERUSER);
    w.grant(and("csd-rwx"), "localhost:app", ALICE, ALICE);
    assert_eq!(w.access_of(ALICE, "localhost:app"), Access::Owner);
}

#[test]
fn an_and_mask_takes_away_whatever_or_masks_add_and_wherever_they_sit() {
    let mut w = world();
    // The restriction sits higher on the path than the Or mask: still applied last.
    w.grant(and("csd-Rwx"), "localhost:+:**", CAROL, HYPERUSER);
    w.grant(or("csd-RWX"), "localhost:app", CAROL, ALICE);
    assert_eq!(w.access_of(CAROL, "localhost:app"), rights("csd-Rwx"));
}

/// Regression: a recursion cut-off once made a deep granter powerless, and a powerless
/// granter's And mask is ignored, so the cut removed restrictions (failed open).
///
/// m7 holds RW from Alice but Admin (super by a hyperuser grant) restricts m7 to R, so
/// `access(m7) = R` and nothing m7 grants can carry W. Yet with a chain
/// m7 -> m6 -> ... -> m1 -> bob of W grants, Bob's evaluation reaches m7 at depth 8,
/// where Admin is cut to powerless, the restriction vanishes, m7 "holds" RW, and W flows
/// all the way down to Bob although every intermediate link, asked directly, has nothing.
#[test]
fn the_depth_cut_never_lifts_a_restriction() {
    let mut w = world();
    let links: Vec<String> = (1..LONG_CHAIN)
        .map(|i| format!("localhost:users:m{i}"))
        .collect();
    for link in &links {
        w.add(link, Kind::User, HYPERUSER);
    }
    let deepest = links.last().unwrap().clone();
    w.grant(AccessGrantKind::Super, "localhost:+:**", ADMIN, HYPERUSER);
    w.grant(or("csd-RWx"), "localhost:app", &deepest, ALICE);
    w.grant(and("csd-Rwx"), "localhost:app", &deepest, ADMIN);
    let mut granter = deepest.clone();
    for link in links.iter().rev().skip(1) {
        w.grant(or("csd-rWx"), "localhost:app", link, &granter);
        granter = link.clone();
    }
    w.grant(or("csd-rWx"), "localhost:app", BOB, &granter);

    assert_eq!(w.access_of(&deepest, "localhost:app"), rights("csd-Rwx"));
    for link in links.iter().rev().skip(1) {
        assert_eq!(w.access_of(link, "localhost:app"), Access::none(), "{link}");
    }
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

// --- Super ------------------------------------------------------------------------------------

#[test]
fn a_super_grant_by_the_hyperuser_gives_super() {
    let mut w = world();
    w.grant(AccessGrantKind::Super, "localhost:app:+:**", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::Super);
    assert_eq!(w.access_of(BOB, "localhost:app:db:table"), Access::Super);
    assert_eq!(w.access_of(BOB, "localhost"), Access::none());
}

#[test]
fn a_super_grant_by_a_non_super_granter_is_ignored() {
    let mut w = world();
    // Not by the owner (owners are not super), nor by a stranger.
    w.grant(AccessGrantKind::Super, "localhost:app", BOB, ALICE);
    w.grant(AccessGrantKind::Super, "localhost:app", CAROL, DAVE);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
    assert_eq!(w.access_of(CAROL, "localhost:app"), Access::none());
    // Full permissions are not super either.
    w.grant(or("CSD-RWX"), "localhost:app", DAVE, ALICE);
    assert_eq!(w.access_of(CAROL, "localhost:app"), Access::none());
}

#[test]
fn the_owner_with_a_super_grant_is_super_owner() {
    let mut w = world();
    w.grant(AccessGrantKind::Super, "localhost:**", ALICE, HYPERUSER);
    assert_eq!(w.access_of(ALICE, "localhost:app"), Access::SuperOwner);
    assert_eq!(w.access_of(ALICE, "localhost:other"), Access::Super);
}

#[test]
fn a_super_grant_by_a_super_granted_particle_counts_where_it_is_super() {
    let mut w = world();
    w.grant(
        AccessGrantKind::Super,
        "localhost:app:+:**",
        ADMIN,
        HYPERUSER,
    );
    w.grant(AccessGrantKind::Super, "localhost:+:**", BOB, ADMIN);
    assert_eq!(w.access_of(BOB, "localhost:app:db"), Access::Super);
    // Admin is not super on localhost itself: his grant does not count there.
    assert_eq!(w.access_of(BOB, "localhost"), Access::none());
}

#[test]
fn super_is_not_restricted_by_and_masks() {
    let mut w = world();
    w.grant(AccessGrantKind::Super, "localhost:app", BOB, HYPERUSER);
    w.grant(and("csd-rwx"), "localhost:app", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::Super);
}

// --- Privileges ---------------------------------------------------------------------------

#[test]
fn a_privilege_granted_by_the_owner_counts() {
    let mut w = world();
    w.grant(
        privilege("property:email:read"),
        "localhost:app",
        BOB,
        ALICE,
    );
    let got = w.access_of(BOB, "localhost:app");
    assert_eq!(got, enumerated("csd-rwx", &["property:email:read"]));
    assert!(got.has_privilege("property:email:read"));
    assert!(!got.has_privilege("property:email:write"));
}

#[test]
fn a_privilege_granted_by_a_stranger_is_ignored() {
    let mut w = world();
    w.grant(
        privilege("property:email:read"),
        "localhost:app",
        BOB,
        CAROL,
    );
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

#[test]
fn a_privilege_does_not_pass_along_a_chain() {
    let mut w = world();
    w.grant(privilege("a"), "localhost:app", CAROL, ALICE);
    w.grant(privilege("a"), "localhost:app", BOB, CAROL);
    assert_eq!(
        w.access_of(CAROL, "localhost:app"),
        enumerated("csd-rwx", &["a"])
    );
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

#[test]
fn privileges_and_permissions_appear_together_and_and_masks_leave_privileges_alone() {
    let mut w = world();
    w.grant(privilege("b"), "localhost:app", BOB, HYPERUSER);
    w.grant(privilege("a"), "localhost:app", BOB, ALICE);
    w.grant(or("csd-RWx"), "localhost:app", BOB, ALICE);
    w.grant(and("csd-Rwx"), "localhost:app", BOB, ALICE);
    let got = w.access_of(BOB, "localhost:app");
    assert_eq!(got, enumerated("csd-Rwx", &["a", "b"]));
    let Access::Enumerated(e) = &got else {
        panic!("{got:?}")
    };
    assert_eq!(
        e.privileges,
        BTreeSet::from(["a".to_string(), "b".to_string()])
    );
    assert_eq!(got.to_string(), "csd-Rwx [a, b]");
}

// --- Selectors --------------------------------------------------------------------------------

#[test]
fn a_grant_on_recursive_applies_below_but_not_to_the_point_itself() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:**", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost"), Access::none());
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("csd-Rwx"));
    assert_eq!(
        w.access_of(BOB, "localhost:app:db:table"),
        rights("csd-Rwx")
    );
}

#[test]
fn a_grant_on_inclusive_recursive_applies_to_the_point_and_below() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:+:**", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost"), rights("csd-Rwx"));
    assert_eq!(
        w.access_of(BOB, "localhost:app:db:table"),
        rights("csd-Rwx")
    );
    assert_eq!(w.access_of(BOB, "ROOT"), Access::none());
}

#[test]
fn a_grant_on_one_wildcard_hop_applies_one_level_down() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:*:db", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("csd-Rwx"));
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
    assert_eq!(w.access_of(BOB, "localhost:app:db:table"), Access::none());
}

#[test]
fn a_grant_on_the_widest_selector_applies_everywhere_in_its_route() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "+:**", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "ROOT"), rights("csd-Rwx"));
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("csd-Rwx"));
}

#[test]
fn an_on_selector_kind_filter_looks_at_the_target_kinds() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:**<Base>", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none(), "an App");
    assert_eq!(w.access_of(BOB, "localhost:app:db"), rights("csd-Rwx"));
    assert_eq!(w.access_of(BOB, "localhost:other"), rights("csd-Rwx"));
}

#[test]
fn a_to_selector_with_a_kind_filter_matches_only_agents_of_that_kind() {
    let mut w = world();
    w.add("localhost:app:worker", Kind::Mechtron, ALICE);
    w.grant(or("csd-Rwx"), "localhost:other", "**<User>", HYPERUSER);
    w.grant(
        or("csd-rWx"),
        "localhost:other",
        "localhost:*<App>:*<Mechtron>",
        HYPERUSER,
    );
    assert_eq!(w.access_of(BOB, "localhost:other"), rights("csd-Rwx"));
    assert_eq!(
        w.access_of("localhost:app", "localhost:other"),
        Access::none(),
        "an App"
    );
    assert_eq!(
        w.access_of("localhost:app:worker", "localhost:other"),
        rights("csd-rWx")
    );
    assert_eq!(
        w.access_of("localhost:app:db", "localhost:other"),
        Access::none(),
        "a Base"
    );
}

#[test]
fn an_agent_whose_kinds_are_unknown_never_matches_a_kind_filter() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:other", "**<User>", HYPERUSER);
    w.grant(
        or("csd-rWx"),
        "localhost:other",
        "localhost:users:*",
        HYPERUSER,
    );
    // Not registered: no kinds along its path, so only the kind-free grant matches.
    assert_eq!(
        w.access_of("localhost:users:ghost", "localhost:other"),
        rights("csd-rWx")
    );
}

#[test]
fn grants_on_another_route_do_not_apply_to_this_route() {
    let mut w = world();
    w.add("GLOBAL::executor", Kind::Global, HYPERUSER);
    w.grant(or("CSD-RWX"), "GLOBAL::+:**", BOB, HYPERUSER);
    w.grant(or("CSD-RWX"), "GLOBAL::**", "+:**", HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost"), Access::none());
    assert_eq!(w.access_of(BOB, "ROOT"), Access::none());
    assert_eq!(w.access_of(BOB, "GLOBAL::executor"), rights("CSD-RWX"));
    // And the other way round: this route's widest selector stops at its own root.
    w.grant(or("csd-Rwx"), "+:**", "**", HYPERUSER);
    assert_eq!(w.access_of(CAROL, "GLOBAL::executor"), rights("CSD-RWX"));
    assert_eq!(w.access_of(DAVE, "localhost:app"), rights("csd-Rwx"));
    assert_eq!(
        w.access(&Agent::Anonymous, "GLOBAL::executor"),
        Access::none(),
        "`+:**` as a to-selector does not reach GLOBAL:: agents"
    );
}

// --- Anonymous ------------------------------------------------------------------------------

#[test]
fn the_anonymous_agent_gets_grants_to_global_anonymous() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:app:+:**", ANONYMOUS, ALICE);
    assert_eq!(
        w.access(&Agent::Anonymous, "localhost:app:db"),
        rights("csd-Rwx")
    );
    assert_eq!(
        w.access(&Agent::Anonymous, "localhost:other"),
        Access::none()
    );
    // The point form is the same agent.
    assert_eq!(w.access_of(ANONYMOUS, "localhost:app"), rights("csd-Rwx"));
    // Users are not anonymous.
    assert_eq!(w.access_of(BOB, "localhost:app"), Access::none());
}

#[test]
fn the_anonymous_agent_matches_global_wildcards_but_not_this_routes() {
    let mut w = world();
    w.grant(or("csd-Rwx"), "localhost:app", "GLOBAL::*", ALICE);
    w.grant(or("csd-rWx"), "localhost:app", "**", ALICE);
    assert_eq!(
        w.access(&Agent::Anonymous, "localhost:app"),
        rights("csd-Rwx")
    );
    assert_eq!(w.access_of(BOB, "localhost:app"), rights("csd-rWx"));
}

#[test]
fn an_anonymous_grant_by_a_powerless_particle_is_ignored() {
    let mut w = world();
    w.grant(or("csd-RWX"), "localhost", ANONYMOUS, BOB);
    assert_eq!(w.access(&Agent::Anonymous, "localhost"), Access::none());
}

// --- Errors ---------------------------------------------------------------------------------

#[test]
fn a_missing_target_is_not_found() {
    let w = world();
    for agent in [Agent::HyperUser, Agent::Anonymous, user(ALICE)] {
        let err = access(&agent, &p("localhost:nope"), &w).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{agent}: {err}");
        let err = access(&agent, &p("GLOBAL::nope"), &w).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{agent}: {err}");
    }
}

#[test]
fn a_target_below_a_missing_ancestor_is_found_but_its_kinds_stop_at_the_gap() {
    let mut w = world();
    w.add("localhost:gap:leaf", Kind::Base, ALICE);
    assert_eq!(w.access_of(ALICE, "localhost:gap:leaf"), Access::Owner);
    assert_eq!(kinds_along(&p("localhost:gap:leaf"), &w), vec![Kind::Space]);
    w.grant(or("csd-Rwx"), "localhost:**<Base>", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:gap:leaf"), Access::none());
}

// --- Permissions strings --------------------------------------------------------------------

#[test]
fn permissions_strings_parse_and_print_back_in_access_results() {
    for s in [
        "csd-RwX", "CSD-RWX", "csd-rwx", "cSd-rWx", "Csd-rwX", "CsD-RwX",
    ] {
        let mut w = world();
        w.grant(or(s), "localhost:app", BOB, ALICE);
        let got = w.access_of(BOB, "localhost:app");
        assert_eq!(got.to_string(), s);
        assert_eq!(got.permissions(), perms(s));
    }
    let mut w = world();
    w.grant(AccessGrantKind::Super, "localhost:app", BOB, HYPERUSER);
    assert_eq!(w.access_of(BOB, "localhost:app").to_string(), "super");
    assert_eq!(w.access_of(ALICE, "localhost:app").to_string(), "owner");
    assert_eq!(
        w.access(&Agent::HyperUser, "localhost").to_string(),
        "super-owner"
    );
    assert_eq!(w.access_of(CAROL, "localhost:app").to_string(), "csd-rwx");
}

#[test]
fn grant_ids_count_up_per_root() {
    let mut w = world();
    let a = w.grant(or("csd-Rwx"), "localhost:app:**", BOB, ALICE);
    let b = w.grant(or("csd-Rwx"), "localhost:app:+:**", BOB, ALICE);
    let c = w.grant(or("csd-Rwx"), "+:**", BOB, ALICE);
    assert_eq!(a.to_string(), "localhost:app#1");
    assert_eq!(b.to_string(), "localhost:app#2");
    assert_eq!(c.to_string(), "ROOT#1");
}

// --- Cost ---------------------------------------------------------------------------------------

/// `k` particles, none holding anything, each grant `csd-Rwx` on localhost:app to
/// everyone. Returns Bob's access and how many particle lookups it took.
fn powerless_crowd(k: usize) -> (Access, u64) {
    let mut w = world();
    for i in 0..k {
        let s = format!("localhost:users:s{i}");
        w.add(&s, Kind::User, HYPERUSER);
        w.grant(or("csd-Rwx"), "localhost:app", "**", &s);
    }
    w.lookups.set(0);
    let got = w.access_of(BOB, "localhost:app");
    (got, w.lookups.get())
}

#[test]
fn grants_by_a_powerless_crowd_give_nothing() {
    for k in 0..5 {
        assert_eq!(powerless_crowd(k).0, Access::none(), "k = {k}");
    }
}

/// Regression: a recursive evaluation once re-evaluated every granter from scratch, so
/// with `k` granters that all match each other the work grew like k!/(k-8)! (12 grants:
/// 14 million lookups, 28 s). Anyone who can store a dozen grants could stall `access`.
#[test]
fn access_work_is_polynomial_in_the_number_of_grants() {
    let (_, small) = powerless_crowd(4);
    let (_, large) = powerless_crowd(8);
    // Twice the grants: a quadratic or cubic algorithm does at most 8x the work.
    assert!(
        large <= small * 8,
        "4 grants: {small} lookups, 8 grants: {large} lookups"
    );
}

// --- Properties -----------------------------------------------------------------------------------

const AGENTS: [&str; 4] = [
    "localhost:users:u0",
    "localhost:users:u1",
    "localhost:users:u2",
    "localhost:users:u3",
];

/// Points of the random trees, with their kinds; `ROOT` is never listed.
const TREE: [(&str, Kind); 9] = [
    ("localhost", Kind::Space),
    ("localhost:a", Kind::App),
    ("localhost:a:x", Kind::Base),
    ("localhost:b", Kind::Base),
    ("localhost:users", Kind::UserBase),
    ("localhost:users:u0", Kind::User),
    ("localhost:users:u1", Kind::User),
    ("localhost:users:u2", Kind::User),
    ("localhost:users:u3", Kind::User),
];

const ON: [&str; 10] = [
    "+:**",
    "ROOT",
    "localhost",
    "localhost:+:**",
    "localhost:**",
    "localhost:*",
    "localhost:a:+:**",
    "localhost:a:x",
    "localhost:**<Base>",
    "localhost:users:*",
];

const TO: [&str; 9] = [
    "**",
    "+:**",
    "localhost:users:*",
    "localhost:users:u0",
    "localhost:users:u1",
    "**<User>",
    "GLOBAL::anonymous",
    "GLOBAL::*",
    "localhost:a",
];

const BY: [&str; 6] = [
    HYPERUSER,
    "localhost:users:u0",
    "localhost:users:u1",
    "localhost:users:u2",
    "localhost:users:u3",
    ANONYMOUS,
];

fn permissions_from_bits(bits: u8) -> Permissions {
    let bit = |i: u8| bits & (1 << i) != 0;
    Permissions {
        child: ChildPerms {
            create: bit(0),
            select: bit(1),
            delete: bit(2),
        },
        particle: ParticlePerms {
            read: bit(3),
            write: bit(4),
            execute: bit(5),
        },
    }
}

fn arb_kind() -> impl Strategy<Value = AccessGrantKind> {
    let mask = |kind: MaskKind| {
        (0u8..64).prop_map(move |bits| {
            AccessGrantKind::PermissionsMask(PermissionsMask {
                kind,
                permissions: permissions_from_bits(bits),
            })
        })
    };
    prop_oneof![
        1 => Just(AccessGrantKind::Super),
        2 => prop::sample::select(vec!["p", "q"]).prop_map(privilege),
        5 => mask(MaskKind::Or),
        3 => mask(MaskKind::And),
    ]
}

fn arb_grant() -> impl Strategy<Value = AccessGrant> {
    (
        arb_kind(),
        prop::sample::select(ON.to_vec()),
        prop::sample::select(TO.to_vec()),
        prop::sample::select(BY.to_vec()),
    )
        .prop_map(|(kind, on, to, by)| AccessGrant {
            kind,
            on_point: sel(on),
            to_point: sel(to),
            by_particle: p(by),
        })
}

/// A random world: the fixed tree with random owners (the hyperuser or a user), and up
/// to eight random grants.
fn arb_world() -> impl Strategy<Value = World> {
    (
        prop::collection::vec(prop::sample::select(BY[..5].to_vec()), TREE.len()),
        prop::collection::vec(arb_grant(), 0..8),
    )
        .prop_map(|(owners, grants)| {
            let mut w = World::new();
            for ((point, kind), owner) in TREE.iter().zip(owners) {
                w.add(point, *kind, owner);
            }
            for grant in grants {
                w.put(grant);
            }
            w
        })
}

fn targets() -> Vec<Point> {
    std::iter::once(Point::root())
        .chain(TREE.iter().map(|(point, _)| p(point)))
        .collect()
}

fn owner_of(w: &World, target: &Point) -> Point {
    w.particles
        .get(target)
        .map(|f| f.owner.clone())
        .unwrap_or_else(Point::hyperuser)
}

/// Whether `more` gives at least everything `less` gives.
fn covers(more: &Access, less: &Access) -> bool {
    let privileges_ok = match (more, less) {
        (Access::Enumerated(m), Access::Enumerated(l)) => m.privileges.is_superset(&l.privileges),
        (Access::Enumerated(_), _) => false,
        _ => true,
    };
    (more.is_super() || !less.is_super())
        && (more.is_owner() || !less.is_owner())
        && more.permissions().contains(&less.permissions())
        && privileges_ok
}

proptest! {
    #[test]
    fn the_hyperuser_is_always_super(w in arb_world()) {
        for target in targets() {
            let got = access(&Agent::HyperUser, &target, &w).unwrap();
            let expected = if owner_of(&w, &target) == Point::hyperuser() {
                Access::SuperOwner
            } else {
                Access::Super
            };
            prop_assert_eq!(got, expected, "on {}", target);
        }
    }

    /// A non-owner gets no right, privilege or super that some grant to it does not name.
    #[test]
    fn a_non_owner_never_exceeds_the_grants_made_to_it(w in arb_world()) {
        let grants = w.all_grants();
        for target in targets() {
            let owner = owner_of(&w, &target);
            for agent_point in AGENTS.iter().map(|a| p(a)).chain([Point::anonymous()]) {
                let got = access(&Agent::from_point(agent_point.clone()), &target, &w).unwrap();
                prop_assert_eq!(got.is_owner(), agent_point == owner);
                if agent_point == owner {
                    continue;
                }
                let kinds = kinds_along(&agent_point, &w);
                let to_it: Vec<&AccessGrant> = grants
                    .iter()
                    .map(|g| &g.grant)
                    .filter(|g| g.to_point.matches(&agent_point, &kinds))
                    .collect();
                if got.is_super() {
                    prop_assert!(
                        to_it.iter().any(|g| g.kind == AccessGrantKind::Super),
                        "{} is super on {} without a super grant", agent_point, target
                    );
                    continue;
                }
                let mut or_union = Permissions::none();
                let mut named = BTreeSet::new();
                for g in &to_it {
                    match &g.kind {
                        AccessGrantKind::PermissionsMask(m) if m.kind == MaskKind::Or => {
                            or_union = or_union.or(&m.permissions);
                        }
                        AccessGrantKind::Privilege(name) => {
                            named.insert(name.clone());
                        }
                        _ => {}
                    }
                }
                let Access::Enumerated(e) = &got else {
                    return Err(TestCaseError::fail(format!("{agent_point} on {target}: {got:?}")));
                };
                prop_assert!(
                    or_union.contains(&e.permissions),
                    "{} on {}: {} exceeds the Or union {}", agent_point, target, e.permissions, or_union
                );
                prop_assert!(e.privileges.is_subset(&named));
            }
        }
    }

    #[test]
    fn removing_all_and_masks_never_reduces_access(w in arb_world()) {
        let unmasked = w.without_and_masks();
        for target in targets() {
            for agent in AGENTS.iter().map(|a| user(a)).chain([Agent::Anonymous]) {
                let with = access(&agent, &target, &w).unwrap();
                let without = access(&agent, &target, &unmasked).unwrap();
                prop_assert!(
                    covers(&without, &with),
                    "{} on {}: {} with And masks, {} without", agent, target, with, without
                );
            }
        }
    }

    /// Grants by a granter that holds nothing anywhere change nothing.
    #[test]
    fn grants_by_a_particle_with_no_rights_change_nothing(
        w in arb_world(),
        extra in prop::collection::vec(arb_grant(), 1..4),
    ) {
        // No to-selector of the random grants reaches the LOCAL:: route.
        let nobody = "LOCAL::nobody";
        let base = w.clone();
        let mut more = w;
        for grant in extra {
            more.put(AccessGrant { by_particle: p(nobody), ..grant });
        }
        for target in targets() {
            for agent in AGENTS.iter().map(|a| user(a)).chain([Agent::Anonymous]) {
                prop_assert_eq!(
                    access(&agent, &target, &base).unwrap(),
                    access(&agent, &target, &more).unwrap(),
                    "{} on {}", agent, target
                );
            }
        }
    }

    /// The seed's rule: a grant whose granter neither owns the target nor is super on it
    /// changes nothing there (`Super` grants need a super granter).
    #[test]
    fn grants_without_their_granters_authority_change_nothing(w in arb_world()) {
        for target in targets() {
            let mut counted = w.clone();
            for grants in counted.grants.values_mut() {
                grants.retain(|g| {
                    let granter = access(&user(&g.grant.by_particle.to_string()), &target, &w)
                        .unwrap();
                    granter.may_give(&g.grant.kind)
                });
            }
            for agent in AGENTS.iter().map(|a| user(a)).chain([Agent::Anonymous]) {
                prop_assert_eq!(
                    access(&agent, &target, &w).unwrap(),
                    access(&agent, &target, &counted).unwrap(),
                    "{} on {}", agent, target
                );
            }
        }
    }
}

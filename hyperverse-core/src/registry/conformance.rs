//! The registry conformance suite: the behaviour every [`RegistryApi`] backend must show.
//!
//! Each case is a public async function taking a fresh, empty registry built with
//! [`limits()`]; a backend's test file runs them all with
//! [`registry_conformance_tests!`](crate::registry_conformance_tests):
//!
//! ```ignore
//! async fn fresh() -> Arc<dyn RegistryApi> { Arc::new(MemoryRegistry::new(conformance::limits())) }
//! hyperverse_core::registry_conformance_tests!(fresh);
//! ```
//!
//! Cases panic (with a message naming the expectation) on the first difference.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{Registration, RegistryApi, RegistryLimits, StarEntry, Strategy, content_hash};
use crate::error::Error;
use crate::kind::{BaseKind, Kind, StarSub};
use crate::particle::{PropertyMod, Status};
use crate::point::Point;
use crate::security::{
    Access, AccessGrant, AccessGrantKind, EnumeratedAccess, GrantId, MaskKind, Permissions,
    PermissionsMask,
};
use crate::selector::Selector;
use crate::wave::Agent;

/// The star TTL a backend under test must be built with.
pub const STAR_TTL: Duration = Duration::from_secs(3);

/// The artifact limit a backend under test must be built with.
pub const MAX_ARTIFACT: usize = 64 * 1024;

/// The grants per point a backend under test must be built with.
pub const MAX_GRANTS_PER_POINT: usize = 8;

/// The grants per granter a backend under test must be built with: fewer than
/// [`MAX_GRANTS_PER_POINT`], so that a granter meets its own cap before any point's.
pub const MAX_GRANTS_PER_AGENT: usize = 6;

/// The limits a backend under test must be built with.
pub fn limits() -> RegistryLimits {
    RegistryLimits {
        star_ttl: STAR_TTL,
        max_artifact: MAX_ARTIFACT,
        max_grants_per_point: MAX_GRANTS_PER_POINT,
        max_grants_per_agent: MAX_GRANTS_PER_AGENT,
    }
}

/// Every case, by name; the macro runs exactly these.
#[macro_export]
macro_rules! registry_conformance_tests {
    ($fresh:path) => {
        $crate::registry_conformance_tests!(@cases $fresh;
            register_and_record, root_always_exists, register_needs_parent,
            register_strategies, register_checks_property_rules, assign_star_and_host, swap_star,
            status_and_properties, sequences_count_up, select_by_pattern, children_lists_direct,
            delete_is_recursive, access_owner_and_hyperuser, access_grants_apply,
            chown_only_by_super, list_and_remove_access, grants_at_and_who_may_remove, grants_per_point_are_capped,
            grants_per_agent_are_capped, deleting_a_point_frees_its_granters, star_directory,
            star_directory_expires, artifacts, saved_state, concurrent_registrations,
            register_again_with_its_request_id
        );
    };
    (@cases $fresh:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let registry = $fresh().await;
                $crate::registry::conformance::$case(registry).await;
            }
        )+
    };
}

type Registry = Arc<dyn RegistryApi>;

fn p(s: &str) -> Point {
    s.parse().expect("test points parse")
}

fn sel(s: &str) -> Selector {
    s.parse().expect("test selectors parse")
}

fn perms(s: &str) -> Permissions {
    s.parse().expect("test permissions parse")
}

fn user(s: &str) -> Agent {
    Agent::Point(p(s))
}

async fn create(registry: &Registry, point: &str, kind: Kind, owner: &str) {
    registry
        .register(&Registration::new(p(point), kind, p(owner)))
        .await
        .unwrap_or_else(|e| panic!("register {point}: {e}"));
}

/// A small tree: localhost<Space> (hyperuser) › app<App> (alice) › db<Base>, worker<Mechtron>;
/// localhost:users<UserBase> › alice<User>, bob<User>.
async fn tree(registry: &Registry) {
    let hyper = "GLOBAL::hyperuser";
    create(registry, "localhost", Kind::Space, hyper).await;
    create(registry, "localhost:users", Kind::UserBase, hyper).await;
    create(registry, "localhost:users:alice", Kind::User, hyper).await;
    create(registry, "localhost:users:bob", Kind::User, hyper).await;
    create(
        registry,
        "localhost:app",
        Kind::App,
        "localhost:users:alice",
    )
    .await;
    create(
        registry,
        "localhost:app:db",
        Kind::Base,
        "localhost:users:alice",
    )
    .await;
    let mut worker = Registration::new(
        p("localhost:app:worker"),
        Kind::Mechtron,
        p("localhost:users:alice"),
    );
    worker.properties = vec![PropertyMod::set("wasm", "repo:echo:1.0.0")];
    registry.register(&worker).await.expect("register worker");
}

fn points(stubs: &[crate::particle::Stub]) -> Vec<String> {
    stubs.iter().map(|s| s.point.to_string()).collect()
}

/// Register stores the record as given; `record` reads it back.
pub async fn register_and_record(registry: Registry) {
    let mut reg = Registration::new(p("localhost"), Kind::Space, Point::hyperuser());
    reg.properties = vec![PropertyMod::set("description", "the local space")];
    let details = registry.register(&reg).await.expect("register localhost");
    assert_eq!(details.stub.point, p("localhost"));
    assert_eq!(details.stub.kind, Kind::Space);
    assert_eq!(details.stub.status, Status::Pending);
    assert_eq!(details.properties["description"].value, "the local space");

    create(
        &registry,
        "localhost:base",
        Kind::Base,
        "localhost:users:alice",
    )
    .await;
    let record = registry.record(&p("localhost:base")).await.expect("record");
    assert_eq!(record.kind(), Kind::Base);
    assert_eq!(
        record.owner,
        p("localhost:users:alice"),
        "owner is recorded"
    );
    assert_eq!(record.location.star, None);
    assert_eq!(
        registry
            .record(&p("localhost"))
            .await
            .expect("record")
            .details,
        details
    );
    let err = registry.record(&p("localhost:nope")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "missing record: {err}");
}

/// `ROOT` exists without registration and cannot be registered or deleted.
pub async fn root_always_exists(registry: Registry) {
    let root = registry.record(&Point::root()).await.expect("ROOT record");
    assert_eq!(root.kind(), Kind::Root);
    assert_eq!(root.owner, Point::hyperuser());
    let err = registry
        .register(&Registration::new(
            Point::root(),
            Kind::Root,
            Point::hyperuser(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "register ROOT: {err}");
    let err = registry.delete(&Point::root()).await.unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "delete ROOT: {err}");
    let err = registry
        .set_status(&Point::root(), Status::Paused)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BadRequest(_)),
        "ROOT's status is fixed: {err}"
    );
    let err = registry
        .assign_star(&p("GLOBAL::ROOT"), &p("LOCAL::central"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BadRequest(_)),
        "any root is fixed: {err}"
    );

    // A chown of everything by the hyperuser changes every particle but the root.
    create(&registry, "localhost", Kind::Space, "GLOBAL::hyperuser").await;
    create(&registry, "localhost:a", Kind::Base, "GLOBAL::hyperuser").await;
    let changed = registry
        .chown(&sel("+:**"), &p("localhost:users:bob"), &Agent::HyperUser)
        .await
        .expect("chown everything");
    assert_eq!(changed, 2);
    let root = registry.record(&Point::root()).await.expect("ROOT record");
    assert_eq!(root.owner, Point::hyperuser(), "ROOT stays the hyperuser's");
    assert_eq!(root.details.stub.status, Status::Ready);
    let a = registry.record(&p("localhost:a")).await.expect("record");
    assert_eq!(a.owner, p("localhost:users:bob"));
}

/// A particle's parent must be registered first.
pub async fn register_needs_parent(registry: Registry) {
    let err = registry
        .register(&Registration::new(
            p("localhost:base"),
            Kind::Base,
            Point::hyperuser(),
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "missing parent: {err}");
    assert!(
        err.to_string().contains("localhost"),
        "names the parent: {err}"
    );
    let err = registry.record(&p("localhost:base")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "nothing stored: {err}");
}

/// Commit refuses duplicates, Ensure accepts the same kind, Override replaces.
pub async fn register_strategies(registry: Registry) {
    create(&registry, "localhost", Kind::Space, "GLOBAL::hyperuser").await;
    create(&registry, "localhost:base", Kind::Base, "GLOBAL::hyperuser").await;
    create(
        &registry,
        "localhost:base:child",
        Kind::Base,
        "GLOBAL::hyperuser",
    )
    .await;
    registry
        .set_status(&p("localhost:base"), Status::Ready)
        .await
        .expect("status");

    let mut reg = Registration::new(p("localhost:base"), Kind::Base, p("localhost:users:bob"));
    let err = registry.register(&reg).await.unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists(_)),
        "commit duplicate: {err}"
    );
    let other_kind = Registration::new(p("localhost:base"), Kind::App, p("localhost:users:bob"));
    let err = registry.register(&other_kind).await.unwrap_err();
    assert_eq!(
        err,
        Error::AlreadyExists("particle localhost:base".into()),
        "a commit is told only that the point is taken, not what holds it"
    );

    reg.strategy = Strategy::Ensure;
    let existing = registry.register(&reg).await.expect("ensure same kind");
    assert_eq!(
        existing.stub.status,
        Status::Ready,
        "ensure returns what is there"
    );
    let owner = registry
        .record(&p("localhost:base"))
        .await
        .expect("record")
        .owner;
    assert_eq!(owner, Point::hyperuser(), "ensure changes nothing");

    reg.kind = Kind::App;
    let err = registry.register(&reg).await.unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists(_)),
        "ensure other kind: {err}"
    );

    reg.strategy = Strategy::Override;
    reg.properties = vec![PropertyMod::set("description", "replaced")];
    let replaced = registry.register(&reg).await.expect("override");
    assert_eq!(replaced.stub.kind, Kind::App);
    assert_eq!(replaced.stub.status, Status::Pending);
    let record = registry.record(&p("localhost:base")).await.expect("record");
    assert_eq!(record.owner, p("localhost:users:bob"));
    assert_eq!(record.details.properties["description"].value, "replaced");
    let children = registry
        .children(&p("localhost:base"))
        .await
        .expect("children");
    assert_eq!(
        points(&children),
        ["localhost:base:child"],
        "override keeps children"
    );
}

/// Creation applies the kind's property rules.
pub async fn register_checks_property_rules(registry: Registry) {
    create(&registry, "localhost", Kind::Space, "GLOBAL::hyperuser").await;
    let mut reg = Registration::new(p("localhost:m"), Kind::Mechtron, Point::hyperuser());
    let err = registry.register(&reg).await.unwrap_err();
    assert!(
        matches!(err, Error::BadRequest(_)),
        "required property: {err}"
    );
    reg.properties = vec![
        PropertyMod::set("wasm", "repo:echo:1.0.0"),
        PropertyMod::set("colour", "red"),
    ];
    let err = registry.register(&reg).await.unwrap_err();
    assert!(
        matches!(&err, Error::BadRequest(why) if why.contains("colour")),
        "unknown property: {err}"
    );
    reg.properties.pop();
    let details = registry.register(&reg).await.expect("valid mechtron");
    assert!(details.properties["wasm"].locked);

    let art = Registration::new(p("localhost:a"), Kind::Artifact, Point::hyperuser());
    let details = registry.register(&art).await.expect("artifact");
    assert_eq!(
        details.properties["content-type"].value, "application/octet-stream",
        "defaults are filled"
    );
}

/// Location is recorded per point.
pub async fn assign_star_and_host(registry: Registry) {
    tree(&registry).await;
    let star = p("LOCAL::central");
    registry
        .assign_star(&p("localhost:app:db"), &star)
        .await
        .expect("assign star");
    registry
        .assign_host(&p("localhost:app:db"), &p("localhost:app"))
        .await
        .expect("assign host");
    let record = registry
        .record(&p("localhost:app:db"))
        .await
        .expect("record");
    assert_eq!(record.location.star, Some(star.clone()));
    assert_eq!(record.location.host, Some(p("localhost:app")));
    let err = registry
        .assign_star(&p("localhost:nope"), &star)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// `swap_star` moves a particle only from the star the caller expects, so of two
/// stars racing to re-activate it exactly one wins.
pub async fn swap_star(registry: Registry) {
    tree(&registry).await;
    let (db, dead, a, b) = (
        p("localhost:app:db"),
        p("LOCAL::dead"),
        p("LOCAL::a"),
        p("LOCAL::b"),
    );
    assert!(
        !registry
            .swap_star(&db, Some(&dead), &a)
            .await
            .expect("swap")
    );
    assert!(
        registry
            .swap_star(&db, None, &dead)
            .await
            .expect("first placement")
    );
    let (won_a, won_b) = futures::join!(
        registry.swap_star(&db, Some(&dead), &a),
        registry.swap_star(&db, Some(&dead), &b)
    );
    let (won_a, won_b) = (won_a.expect("swap a"), won_b.expect("swap b"));
    assert!(won_a ^ won_b, "exactly one wins: a {won_a}, b {won_b}");
    let winner = if won_a { a } else { b };
    let record = registry.record(&db).await.expect("record");
    assert_eq!(record.location.star, Some(winner));
    let err = registry
        .swap_star(&p("localhost:nope"), None, &dead)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// A particle's saved state is replaced by the next, limited like an artifact, and
/// gone with the particle (or an `Override`).
pub async fn saved_state(registry: Registry) {
    tree(&registry).await;
    let db = p("localhost:app:db");
    assert_eq!(registry.get_state(&db).await.expect("none yet"), None);
    registry
        .put_state(&db, Bytes::from_static(b"one"))
        .await
        .expect("save");
    registry
        .put_state(&db, Bytes::from_static(b"two"))
        .await
        .expect("save again");
    let state = registry.get_state(&db).await.expect("read");
    assert_eq!(state.as_deref(), Some(&b"two"[..]));
    let big = registry
        .put_state(&db, Bytes::from(vec![0u8; MAX_ARTIFACT + 1]))
        .await
        .unwrap_err();
    assert!(matches!(big, Error::TooLarge { .. }), "{big}");
    let missing = registry
        .put_state(&p("localhost:nope"), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "{missing}");
    let mut again = Registration::new(db.clone(), Kind::Base, Point::hyperuser());
    again.strategy = Strategy::Override;
    registry.register(&again).await.expect("override");
    assert_eq!(
        registry.get_state(&db).await.expect("read"),
        None,
        "cleared"
    );
    registry
        .put_state(&db, Bytes::from_static(b"three"))
        .await
        .expect("save");
    registry.delete(&db).await.expect("delete");
    assert_eq!(
        registry.get_state(&db).await.expect("read"),
        None,
        "deleted"
    );
}

/// Status and properties change; locked properties do not.
pub async fn status_and_properties(registry: Registry) {
    tree(&registry).await;
    let worker = p("localhost:app:worker");
    registry
        .set_status(&worker, Status::Ready)
        .await
        .expect("status");
    assert_eq!(
        registry
            .record(&worker)
            .await
            .expect("record")
            .details
            .stub
            .status,
        Status::Ready
    );
    registry
        .set_properties(&worker, &vec![PropertyMod::set("config", "x=1")])
        .await
        .expect("set config");
    let props = registry.get_properties(&worker).await.expect("props");
    assert_eq!(props["config"].value, "x=1");
    assert_eq!(props["wasm"].value, "repo:echo:1.0.0");
    let err = registry
        .set_properties(&worker, &vec![PropertyMod::set("wasm", "repo:other:1.0.0")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "locked: {err}");
    let err = registry
        .set_properties(&worker, &vec![PropertyMod::set("nope", "1")])
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "unknown key: {err}");
    registry
        .set_properties(&worker, &vec![PropertyMod::Unset("config".into())])
        .await
        .expect("unset");
    let props = registry.get_properties(&worker).await.expect("props");
    assert!(!props.contains_key("config"));
    let err = registry
        .set_status(&p("localhost:nope"), Status::Ready)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    let err = registry
        .get_properties(&p("localhost:nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// Sequences start at 1, count up per point, and never repeat under concurrency.
pub async fn sequences_count_up(registry: Registry) {
    tree(&registry).await;
    let app = p("localhost:app");
    assert_eq!(registry.sequence(&app).await.expect("seq"), 1);
    assert_eq!(registry.sequence(&app).await.expect("seq"), 2);
    assert_eq!(
        registry.sequence(&p("localhost")).await.expect("seq"),
        1,
        "per point"
    );
    let mut handles = Vec::new();
    for _ in 0..50 {
        let registry = registry.clone();
        let app = app.clone();
        handles.push(tokio::spawn(async move { registry.sequence(&app).await }));
    }
    let mut seen = Vec::new();
    for h in handles {
        seen.push(h.await.expect("join").expect("seq"));
    }
    seen.sort_unstable();
    assert_eq!(
        seen,
        (3..53).collect::<Vec<u64>>(),
        "no number twice, none skipped"
    );
    let err = registry.sequence(&p("localhost:nope")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// Selectors select registered points, kind filters included.
pub async fn select_by_pattern(registry: Registry) {
    tree(&registry).await;
    let select = |s: &'static str| {
        let registry = registry.clone();
        async move { points(&registry.select(&sel(s)).await.expect(s)) }
    };
    assert_eq!(select("*").await, ["localhost"]);
    assert_eq!(
        select("localhost:*").await,
        ["localhost:app", "localhost:users"]
    );
    assert_eq!(
        select("localhost:**").await,
        [
            "localhost:app",
            "localhost:app:db",
            "localhost:app:worker",
            "localhost:users",
            "localhost:users:alice",
            "localhost:users:bob",
        ]
    );
    assert_eq!(
        select("+:**").await.len(),
        8,
        "ROOT, localhost and six below"
    );
    assert_eq!(select("+:**").await[0], "ROOT");
    assert_eq!(
        select("localhost:**<Mechtron>").await,
        ["localhost:app:worker"]
    );
    assert_eq!(
        select("**<User>").await,
        ["localhost:users:alice", "localhost:users:bob"]
    );
    assert_eq!(
        select("*<Space>:*<App>:*").await,
        ["localhost:app:db", "localhost:app:worker"]
    );
    assert_eq!(select("localhost:app:db").await, ["localhost:app:db"]);
    assert!(select("elsewhere:**").await.is_empty());
    assert!(select("localhost:app:db:*").await.is_empty());
}

/// Children are the direct children only.
pub async fn children_lists_direct(registry: Registry) {
    tree(&registry).await;
    let children = registry
        .children(&p("localhost:app"))
        .await
        .expect("children");
    assert_eq!(
        points(&children),
        ["localhost:app:db", "localhost:app:worker"]
    );
    assert_eq!(children[1].kind, Kind::Mechtron);
    let top = registry
        .children(&Point::root())
        .await
        .expect("ROOT children");
    assert_eq!(points(&top), ["localhost"]);
    let err = registry.children(&p("localhost:nope")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// Delete takes the subtree, its grants and sequences, and fixes the parent's index.
pub async fn delete_is_recursive(registry: Registry) {
    tree(&registry).await;
    registry.sequence(&p("localhost:app")).await.expect("seq");
    let read_for_bob = AccessGrant {
        kind: AccessGrantKind::PermissionsMask(PermissionsMask {
            kind: MaskKind::Or,
            permissions: perms("csd-Rwx"),
        }),
        on_point: sel("localhost:app:**"),
        to_point: sel("localhost:users:bob"),
        by_particle: Point::hyperuser(),
    };
    let old_id = registry.grant(&read_for_bob).await.expect("grant");
    let mut deleted = registry.delete(&p("localhost:app")).await.expect("delete");
    assert_eq!(
        deleted.last(),
        Some(&p("localhost:app")),
        "deepest first, the point last"
    );
    deleted.sort();
    assert_eq!(
        deleted,
        [
            p("localhost:app"),
            p("localhost:app:db"),
            p("localhost:app:worker")
        ]
    );
    for gone in ["localhost:app", "localhost:app:db", "localhost:app:worker"] {
        let err = registry.record(&p(gone)).await.unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{gone}: {err}");
    }
    let children = registry.children(&p("localhost")).await.expect("children");
    assert_eq!(
        points(&children),
        ["localhost:users"],
        "parent index cleaned"
    );

    create(&registry, "localhost:app", Kind::App, "GLOBAL::hyperuser").await;
    create(
        &registry,
        "localhost:app:db",
        Kind::Base,
        "GLOBAL::hyperuser",
    )
    .await;
    assert_eq!(
        registry.sequence(&p("localhost:app")).await.expect("seq"),
        1,
        "sequence starts afresh"
    );
    let grants = registry
        .list_access(None, &p("localhost:app:db"))
        .await
        .expect("list");
    assert!(
        grants.is_empty(),
        "grants went with the subtree: {grants:?}"
    );
    let new_id = registry.grant(&read_for_bob).await.expect("grant");
    assert_ne!(new_id, old_id, "grant ids are never reused");
    let err = registry.delete(&p("localhost:nope")).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// The hyperuser is super; owners own; strangers have nothing.
pub async fn access_owner_and_hyperuser(registry: Registry) {
    tree(&registry).await;
    let app = p("localhost:app");
    assert_eq!(
        registry
            .access(&Agent::HyperUser, &app)
            .await
            .expect("access"),
        Access::Super
    );
    assert_eq!(
        registry
            .access(&Agent::HyperUser, &p("localhost"))
            .await
            .expect("access"),
        Access::SuperOwner
    );
    assert_eq!(
        registry
            .access(&user("localhost:users:alice"), &app)
            .await
            .expect("access"),
        Access::Owner
    );
    assert_eq!(
        registry
            .access(&user("localhost:users:bob"), &app)
            .await
            .expect("access"),
        Access::none()
    );
    assert_eq!(
        registry
            .access(&Agent::Anonymous, &app)
            .await
            .expect("access"),
        Access::none()
    );
    let err = registry
        .access(&Agent::HyperUser, &p("localhost:nope"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

/// Grants apply along the path; powerless granters are ignored; And restricts Or.
pub async fn access_grants_apply(registry: Registry) {
    tree(&registry).await;
    let bob = user("localhost:users:bob");
    let grant = |kind: AccessGrantKind, on: &str, to: &str, by: &str| AccessGrant {
        kind,
        on_point: sel(on),
        to_point: sel(to),
        by_particle: p(by),
    };
    let or = |s: &str| {
        AccessGrantKind::PermissionsMask(PermissionsMask {
            kind: MaskKind::Or,
            permissions: perms(s),
        })
    };
    // Alice owns app and db: her grant to bob counts there.
    registry
        .grant(&grant(
            or("cSd-RwX"),
            "localhost:app:+:**",
            "localhost:users:bob",
            "localhost:users:alice",
        ))
        .await
        .expect("grant");
    let db = p("localhost:app:db");
    assert_eq!(
        registry
            .access(&bob, &db)
            .await
            .expect("access")
            .permissions(),
        perms("cSd-RwX")
    );
    // Bob holds no rights on localhost itself: his grant to anonymous is ignored.
    registry
        .grant(&grant(
            or("csd-RWX"),
            "localhost",
            "GLOBAL::anonymous",
            "localhost:users:bob",
        ))
        .await
        .expect("grant");
    assert_eq!(
        registry
            .access(&Agent::Anonymous, &p("localhost"))
            .await
            .expect("access"),
        Access::none()
    );
    // The hyperuser restricts everyone below localhost to read.
    registry
        .grant(&grant(
            AccessGrantKind::PermissionsMask(PermissionsMask {
                kind: MaskKind::And,
                permissions: perms("csd-Rwx"),
            }),
            "localhost:**",
            "**",
            "GLOBAL::hyperuser",
        ))
        .await
        .expect("grant");
    assert_eq!(
        registry.access(&bob, &db).await.expect("access"),
        Access::Enumerated(EnumeratedAccess {
            privileges: Default::default(),
            permissions: perms("csd-Rwx"),
        })
    );
    // A super grant by the hyperuser, with a kind filter on the agent.
    registry
        .grant(&grant(
            AccessGrantKind::Super,
            "localhost:app:**",
            "**<User>",
            "GLOBAL::hyperuser",
        ))
        .await
        .expect("grant");
    assert_eq!(
        registry.access(&bob, &db).await.expect("access"),
        Access::Super
    );
    assert_eq!(
        registry
            .access(&user("localhost:app"), &db)
            .await
            .expect("access"),
        Access::Enumerated(EnumeratedAccess::default()),
        "localhost:app is an App, not a User"
    );
}

/// Only a super agent may change owners.
pub async fn chown_only_by_super(registry: Registry) {
    tree(&registry).await;
    let bob = p("localhost:users:bob");
    let err = registry
        .chown(
            &sel("localhost:app:+:**"),
            &bob,
            &user("localhost:users:alice"),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(_)),
        "owner is not super: {err}"
    );
    assert_eq!(
        registry
            .record(&p("localhost:app"))
            .await
            .expect("record")
            .owner,
        p("localhost:users:alice"),
        "nothing changed"
    );
    let changed = registry
        .chown(&sel("localhost:app:+:**"), &bob, &Agent::HyperUser)
        .await
        .expect("chown by hyperuser");
    assert_eq!(changed, 3);
    assert_eq!(
        registry
            .access(&Agent::Point(bob), &p("localhost:app:db"))
            .await
            .expect("access"),
        Access::Owner
    );
}

/// `grants_at` lists the grants indexed at a point, whether or not they match it; a
/// grant is removed by its granter or by an agent with full access on the granter, not
/// by one that is only super below the grant's root (the seed's rule).
pub async fn grants_at_and_who_may_remove(registry: Registry) {
    tree(&registry).await;
    let by_app = AccessGrant {
        kind: AccessGrantKind::PermissionsMask("+csd-Rwx".parse().expect("mask")),
        on_point: sel("localhost:app:**<Mechtron>"),
        to_point: sel("localhost:users:bob"),
        by_particle: p("localhost:app"),
    };
    let first = registry.grant(&by_app).await.expect("grant");
    let by_bob = AccessGrant {
        by_particle: p("localhost:users:bob"),
        ..by_app.clone()
    };
    let second = registry.grant(&by_bob).await.expect("grant");
    let at_app = registry.grants_at(&p("localhost:app")).await.expect("list");
    let ids: Vec<GrantId> = at_app.iter().map(|g| g.id.clone()).collect();
    assert_eq!(ids, [first.clone(), second.clone()], "in the order made");
    assert_eq!(at_app[0].grant, by_app);
    assert!(
        registry
            .grants_at(&p("localhost:app:db"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(
        registry
            .grants_at(&Point::root())
            .await
            .expect("root")
            .is_empty()
    );
    let err = registry
        .grants_at(&p("localhost:nowhere"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");

    // Carol is super on everything below localhost:app, not on localhost:app itself.
    create(
        &registry,
        "localhost:users:carol",
        Kind::User,
        "GLOBAL::hyperuser",
    )
    .await;
    let super_below = AccessGrant {
        kind: AccessGrantKind::Super,
        on_point: sel("localhost:app:**"),
        to_point: sel("localhost:users:carol"),
        by_particle: Point::hyperuser(),
    };
    registry.grant(&super_below).await.expect("grant");
    let carol = user("localhost:users:carol");
    let err = registry.remove_access(&first, &carol).await.unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(_)),
        "super below is not enough: {err}"
    );
    // Alice owns localhost:app, the granter: full access on it.
    registry
        .remove_access(&first, &user("localhost:users:alice"))
        .await
        .expect("the granter's owner removes");
    // Bob's grant: Alice has nothing on Bob (the hyperuser's), Bob removes his own.
    let err = registry
        .remove_access(&second, &user("localhost:users:alice"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "{err}");
    registry
        .remove_access(&second, &user("localhost:users:bob"))
        .await
        .expect("the granter removes");
    let left = registry.grants_at(&p("localhost:app")).await.expect("list");
    assert_eq!(left.len(), 1, "Carol's super grant only: {left:?}");
    assert_eq!(left[0].grant, super_below);
}

/// Grants are listed where they apply and removed only by their granter or a super.
pub async fn list_and_remove_access(registry: Registry) {
    tree(&registry).await;
    let grant = AccessGrant {
        kind: AccessGrantKind::Privilege("property:config:read".into()),
        on_point: sel("localhost:app:**"),
        to_point: sel("localhost:users:bob"),
        by_particle: p("localhost:users:alice"),
    };
    let id = registry.grant(&grant).await.expect("grant");
    assert_eq!(
        id.root,
        p("localhost:app"),
        "indexed at the selector's root"
    );
    let root_grant = AccessGrant {
        on_point: sel("+:**"),
        by_particle: Point::hyperuser(),
        ..grant.clone()
    };
    let root_id = registry.grant(&root_grant).await.expect("grant");
    assert_ne!(id, root_id);

    let db = p("localhost:app:db");
    let listed = registry.list_access(None, &db).await.expect("list");
    let ids: Vec<_> = listed.iter().map(|g| g.id.clone()).collect();
    assert_eq!(
        ids,
        [root_id.clone(), id.clone()],
        "root first, down the path"
    );
    assert_eq!(listed[1].grant, grant);
    let for_alice = registry
        .list_access(Some(&p("localhost:users:alice")), &db)
        .await
        .expect("list");
    assert!(for_alice.is_empty(), "filtered by agent");
    assert!(
        registry
            .list_access(None, &p("localhost:app"))
            .await
            .expect("list")
            .len()
            == 1,
        "`localhost:app:**` does not cover localhost:app itself"
    );
    let access = registry
        .access(&user("localhost:users:bob"), &db)
        .await
        .expect("access");
    assert!(access.has_privilege("property:config:read"));

    let err = registry
        .remove_access(&id, &user("localhost:users:bob"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "not the granter: {err}");
    let err = registry
        .remove_access(&root_id, &user("localhost:users:alice"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Forbidden(_)),
        "not the hyperuser's: {err}"
    );
    registry
        .remove_access(&id, &user("localhost:users:alice"))
        .await
        .expect("granter removes");
    registry
        .remove_access(&root_id, &Agent::HyperUser)
        .await
        .expect("super removes");
    assert!(
        registry
            .list_access(None, &db)
            .await
            .expect("list")
            .is_empty()
    );
    let err = registry
        .remove_access(&id, &Agent::HyperUser)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "removed twice: {err}");

    let orphan = AccessGrant {
        on_point: sel("nowhere:**"),
        ..grant
    };
    let err = registry.grant(&orphan).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "grant rooted at a missing point: {err}"
    );
}

/// A point holds at most `max_grants_per_point` grants: the next is refused, naming the
/// point and the limit, and stores nothing; one revoked makes room for one more; other
/// points are not affected.
pub async fn grants_per_point_are_capped(registry: Registry) {
    tree(&registry).await;
    let grant = |n: usize| AccessGrant {
        kind: AccessGrantKind::Privilege(format!("p{n}")),
        on_point: sel("localhost:app:**"),
        to_point: sel("localhost:users:bob"),
        by_particle: Point::hyperuser(),
    };
    let mut ids = Vec::new();
    for n in 0..MAX_GRANTS_PER_POINT {
        ids.push(registry.grant(&grant(n)).await.expect("under the limit"));
    }
    let err = registry.grant(&grant(99)).await.unwrap_err();
    match &err {
        Error::BadRequest(why) => assert!(
            why.contains("localhost:app") && why.contains(&MAX_GRANTS_PER_POINT.to_string()),
            "{why}"
        ),
        other => panic!("the grant over the limit: {other:?}"),
    }
    let db = p("localhost:app:db");
    let listed = registry.list_access(None, &db).await.expect("list");
    assert_eq!(
        listed.len(),
        MAX_GRANTS_PER_POINT,
        "the refused grant stored nothing"
    );
    let elsewhere = AccessGrant {
        on_point: sel("localhost:users:**"),
        ..grant(100)
    };
    registry
        .grant(&elsewhere)
        .await
        .expect("another point has room");
    registry
        .remove_access(&ids[0], &Agent::HyperUser)
        .await
        .expect("revoke");
    registry
        .grant(&grant(99))
        .await
        .expect("room again after a revoke");
    let err = registry.grant(&grant(100)).await.unwrap_err();
    assert!(matches!(err, Error::BadRequest(_)), "full again: {err}");
}

/// A grant by `by` of privilege `name` on `on`, to bob.
fn privilege(name: &str, on: &str, by: &str) -> AccessGrant {
    AccessGrant {
        kind: AccessGrantKind::Privilege(name.into()),
        on_point: sel(on),
        to_point: sel("localhost:users:bob"),
        by_particle: p(by),
    }
}

/// Asserts that `err` is the refusal of a grant by `agent` over its cap.
fn assert_agent_capped(err: &Error, agent: &str) {
    match err {
        Error::BadRequest(why) => assert!(
            why.contains(agent) && why.contains(&MAX_GRANTS_PER_AGENT.to_string()),
            "the refusal names the granter and the limit: {why}"
        ),
        other => panic!("a grant over the granter's cap: {other:?}"),
    }
}

/// One granter holds at most `max_grants_per_agent` grants, wherever they are indexed:
/// the next is refused, naming the granter and the limit, and stores nothing; other
/// granters are not affected and the hyperuser is not counted; a grant refused for
/// another reason takes none; a revoke (by anyone) gives the granter one back, once.
pub async fn grants_per_agent_are_capped(registry: Registry) {
    tree(&registry).await;
    let alice = "localhost:users:alice";
    let err = registry
        .grant(&privilege("orphan", "nowhere:**", alice))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "a missing root: {err}");
    let mut at_app = Vec::new();
    for n in 0..MAX_GRANTS_PER_AGENT / 2 {
        let grant = privilege(&format!("app{n}"), "localhost:app:**", alice);
        at_app.push(registry.grant(&grant).await.expect("under the cap"));
    }
    for n in MAX_GRANTS_PER_AGENT / 2..MAX_GRANTS_PER_AGENT {
        let grant = privilege(&format!("db{n}"), "localhost:app:db:**", alice);
        let id = registry.grant(&grant).await.expect("under the cap");
        assert_eq!(id.root, p("localhost:app:db"), "spread over two points");
    }
    let worker = p("localhost:app:worker");
    let err = registry
        .grant(&privilege("over", "localhost:app:worker", alice))
        .await
        .unwrap_err();
    assert_agent_capped(&err, alice);
    let listed = registry.list_access(None, &worker).await.expect("list");
    assert_eq!(
        listed.len(),
        MAX_GRANTS_PER_AGENT / 2,
        "the refused grant stored nothing, though its point has room: {listed:?}"
    );

    registry
        .grant(&privilege(
            "bob",
            "localhost:app:worker",
            "localhost:users:bob",
        ))
        .await
        .expect("another granter is not affected");
    for n in 0..=MAX_GRANTS_PER_AGENT {
        registry
            .grant(&privilege(
                &format!("h{n}"),
                "localhost:**",
                "GLOBAL::hyperuser",
            ))
            .await
            .expect("the hyperuser is not counted");
    }

    registry
        .remove_access(&at_app[0], &Agent::HyperUser)
        .await
        .expect("a super revokes");
    let err = registry
        .remove_access(&at_app[0], &Agent::HyperUser)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "revoked twice: {err}");
    registry
        .grant(&privilege("again", "localhost:app:worker", alice))
        .await
        .expect("the revoke gave the granter one back");
    let err = registry
        .grant(&privilege("over", "localhost:app:worker", alice))
        .await
        .unwrap_err();
    assert_agent_capped(&err, alice);
}

/// Deleting a point drops the grants indexed at it and below it, and gives each of
/// their granters the allowance back.
pub async fn deleting_a_point_frees_its_granters(registry: Registry) {
    tree(&registry).await;
    let alice = "localhost:users:alice";
    let on = [
        "localhost:app:**",
        "localhost:app:db:**",
        "localhost:app:worker:**",
    ];
    for n in 0..MAX_GRANTS_PER_AGENT {
        let grant = privilege(&format!("a{n}"), on[n % on.len()], alice);
        registry.grant(&grant).await.expect("under the cap");
    }
    registry
        .grant(&privilege("b", "localhost:app:**", "localhost:users:bob"))
        .await
        .expect("bob's grant");
    let err = registry
        .grant(&privilege("over", "localhost:users:**", alice))
        .await
        .unwrap_err();
    assert_agent_capped(&err, alice);

    // db holds a third of alice's grants: deleting it gives those back, no more.
    registry
        .delete(&p("localhost:app:db"))
        .await
        .expect("delete db");
    let freed = MAX_GRANTS_PER_AGENT / on.len();
    for n in 0..freed {
        registry
            .grant(&privilege(&format!("u{n}"), "localhost:users:**", alice))
            .await
            .expect("room after the delete");
    }
    let err = registry
        .grant(&privilege("over", "localhost:users:**", alice))
        .await
        .unwrap_err();
    assert_agent_capped(&err, alice);

    // Deleting app drops the grants at app and at worker, below it.
    registry
        .delete(&p("localhost:app"))
        .await
        .expect("delete app");
    let freed = MAX_GRANTS_PER_AGENT - MAX_GRANTS_PER_AGENT / on.len();
    for n in 0..freed {
        registry
            .grant(&privilege(&format!("v{n}"), "localhost:**", alice))
            .await
            .expect("room after deleting a subtree");
    }
    let err = registry
        .grant(&privilege("over", "localhost:**", alice))
        .await
        .unwrap_err();
    assert_agent_capped(&err, alice);
    for n in 0..MAX_GRANTS_PER_AGENT {
        registry
            .grant(&privilege(
                &format!("b{n}"),
                "localhost:users:bob:**",
                "localhost:users:bob",
            ))
            .await
            .expect("bob's own allowance: one of his grants was dropped");
    }
}

fn star(name: &str, load: u64) -> StarEntry {
    StarEntry {
        star: p(&format!("LOCAL::{name}")),
        kind: StarSub::Super,
        machine: "m1".into(),
        gate: "127.0.0.1:7700".into(),
        hosts: vec![BaseKind::Base, BaseKind::Space],
        load,
    }
}

/// Stars register, heartbeat with their load, list, and deregister.
pub async fn star_directory(registry: Registry) {
    assert!(registry.list_stars().await.expect("list").is_empty());
    registry
        .register_star(&star("b", 0))
        .await
        .expect("register");
    registry
        .register_star(&star("a", 0))
        .await
        .expect("register");
    registry
        .star_heartbeat(&p("LOCAL::a"), 42)
        .await
        .expect("heartbeat");
    let stars = registry.list_stars().await.expect("list");
    assert_eq!(
        stars,
        [star("a", 42), star("b", 0)],
        "ordered by key, load recorded"
    );
    let err = registry
        .star_heartbeat(&p("LOCAL::c"), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "unknown star: {err}");
    registry
        .deregister_star(&p("LOCAL::a"))
        .await
        .expect("deregister");
    registry
        .deregister_star(&p("LOCAL::a"))
        .await
        .expect("deregister twice");
    assert_eq!(registry.list_stars().await.expect("list"), [star("b", 0)]);
}

/// A star not heard from within the TTL drops out; a heartbeat keeps it.
pub async fn star_directory_expires(registry: Registry) {
    registry
        .register_star(&star("quiet", 0))
        .await
        .expect("register");
    registry
        .register_star(&star("lively", 0))
        .await
        .expect("register");
    let deadline = Instant::now() + STAR_TTL * 4;
    loop {
        registry
            .star_heartbeat(&p("LOCAL::lively"), 1)
            .await
            .expect("heartbeat");
        let stars = registry.list_stars().await.expect("list");
        let keys: Vec<String> = stars.iter().map(|s| s.star.to_string()).collect();
        if keys == ["LOCAL::lively"] {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "quiet star still listed: {keys:?}"
        );
        tokio::time::sleep(STAR_TTL / 10).await;
    }
    let err = registry
        .star_heartbeat(&p("LOCAL::quiet"), 1)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "expired star must re-register: {err}"
    );
}

/// Artifacts are stored by point, immutable, limited in size.
pub async fn artifacts(registry: Registry) {
    tree(&registry).await;
    create(
        &registry,
        "localhost:echo",
        Kind::Artifact,
        "GLOBAL::hyperuser",
    )
    .await;
    let art = p("localhost:echo");
    let bytes = Bytes::from_static(b"\0asm\x01\0\0\0");
    let meta = registry
        .put_artifact(&art, bytes.clone())
        .await
        .expect("put");
    assert_eq!(meta.size, 8);
    assert_eq!(meta.hash, content_hash(&bytes));
    assert_eq!(registry.get_artifact(&art).await.expect("get"), bytes);
    registry
        .put_artifact(&art, bytes.clone())
        .await
        .expect("same bytes again");
    let err = registry
        .put_artifact(&art, Bytes::from_static(b"other"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "immutable: {err}");

    create(
        &registry,
        "localhost:big",
        Kind::Artifact,
        "GLOBAL::hyperuser",
    )
    .await;
    let err = registry
        .put_artifact(
            &p("localhost:big"),
            Bytes::from(vec![0u8; MAX_ARTIFACT + 1]),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::TooLarge { .. }),
        "over the limit: {err}"
    );
    let err = registry
        .get_artifact(&p("localhost:big"))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "nothing stored: {err}");
    let err = registry
        .put_artifact(&p("localhost:app"), bytes.clone())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BadRequest(_)),
        "not an Artifact: {err}"
    );
    let err = registry
        .put_artifact(&p("localhost:nope"), bytes)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
    registry.delete(&art).await.expect("delete");
    create(
        &registry,
        "localhost:echo",
        Kind::Artifact,
        "GLOBAL::hyperuser",
    )
    .await;
    let err = registry.get_artifact(&art).await.unwrap_err();
    assert!(
        matches!(err, Error::NotFound(_)),
        "deleted with its particle: {err}"
    );
}

/// A registration sent again with its request id (its answer was lost, the client
/// resent it) is answered as the first time, whatever its strategy, and not applied
/// again; another request id, or none, is another registration.
pub async fn register_again_with_its_request_id(registry: Registry) {
    create(&registry, "localhost", Kind::Space, "GLOBAL::hyperuser").await;
    let point = p("localhost:once");
    let mut reg = Registration::new(point.clone(), Kind::Base, Point::hyperuser());
    reg.properties = vec![PropertyMod::set("description", "first")];
    reg.request_id = Some(0x5eed_0001);
    let first = registry.register(&reg).await.expect("commit");
    registry
        .set_status(&point, Status::Ready)
        .await
        .expect("status changed meanwhile");

    let again = registry
        .register(&reg)
        .await
        .expect("the same commit again");
    assert_eq!(again, first, "answered as the first time");
    let record = registry.record(&point).await.expect("record");
    assert_eq!(
        record.details.stub.status,
        Status::Ready,
        "not applied again"
    );
    let children = registry.children(&p("localhost")).await.expect("children");
    assert_eq!(points(&children), ["localhost:once"], "registered once");

    let mut other = reg.clone();
    other.request_id = Some(0x5eed_0002);
    let err = registry.register(&other).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "another id: {err}");
    other.request_id = None;
    let err = registry.register(&other).await.unwrap_err();
    assert!(matches!(err, Error::AlreadyExists(_)), "no id: {err}");

    // An Override resent must not clear what was saved after it.
    let mut replace = Registration::new(point.clone(), Kind::Base, p("localhost:users:bob"));
    replace.strategy = Strategy::Override;
    replace.request_id = Some(0x5eed_0003);
    let replaced = registry.register(&replace).await.expect("override");
    registry
        .put_state(&point, Bytes::from_static(b"saved after"))
        .await
        .expect("save");
    let again = registry
        .register(&replace)
        .await
        .expect("the same override");
    assert_eq!(again, replaced, "answered as the first time");
    let state = registry.get_state(&point).await.expect("read");
    assert_eq!(
        state.as_deref(),
        Some(&b"saved after"[..]),
        "not replaced again"
    );
    replace.request_id = Some(0x5eed_0004);
    registry.register(&replace).await.expect("another override");
    let state = registry.get_state(&point).await.expect("read");
    assert_eq!(state, None, "another id replaces");
}

/// Many concurrent registrations under one parent all land, once each.
pub async fn concurrent_registrations(registry: Registry) {
    create(&registry, "localhost", Kind::Space, "GLOBAL::hyperuser").await;
    let mut handles = Vec::new();
    for i in 0..200 {
        let registry = registry.clone();
        handles.push(tokio::spawn(async move {
            let point = p(&format!("localhost:p{}", i % 100));
            let mut reg = Registration::new(point, Kind::Base, Point::hyperuser());
            reg.strategy = if i < 100 {
                Strategy::Commit
            } else {
                Strategy::Ensure
            };
            registry.register(&reg).await
        }));
    }
    let mut failures = 0;
    for h in handles {
        match h.await.expect("join") {
            Ok(_) => {}
            Err(Error::AlreadyExists(_)) => failures += 1,
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    let children = registry.children(&p("localhost")).await.expect("children");
    assert_eq!(children.len(), 100, "each point once");
    assert!(failures <= 100, "only Commits may lose a race: {failures}");
}

//! Rights through the gate, in one process over the in-memory registry (no Redis): the
//! right each class of method needs (`r` to read, `w` to change, `x` for anything else),
//! the platform's own `Hyp<…>` methods refused from every client, and the client
//! requests `get`, `select`, `delete`, `migrate`, `grant` and `revoke` as anonymous, as
//! a User with and without the right, as the owner and as the hyperuser.
//!
//! Every test starts its own machine and cast:
//!
//! | agent | holds |
//! |---|---|
//! | hyperuser (`root`) | everything |
//! | `reader`, `writer`, `runner` | `r`, `w`, `x` on `localhost:app` |
//! | `lister` | `s` on `localhost` (select its children) |
//! | `deleter` | `d` on `localhost` (delete its children) |
//! | `olive` | `c` on `localhost`; owns `localhost:olive` (an App she created) |
//! | `nobody` | a User with no grant |
//! | anonymous | no token |

mod local;

use std::sync::Arc;

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::registry::{RegistryApi, Strategy};
use hyperverse_core::security::{
    AccessGrant, AccessGrantKind, GrantId, MaskKind, Permissions, PermissionsMask,
};
use hyperverse_core::wave::{CmdMethod, HttpMethod, HypMethod, Method, Ping, Substance};
use hyperverse_core::{BaseKind, Error, Kind, Point, Result, Selector};
use local::*;
use star_node::client::GateClient;
use star_node::config::Settings;
use star_node::node::Node;
use star_node::protocol::GrantState;

/// Answers every method with its name: whatever reaches it was let through.
struct Witness;

#[async_trait]
impl Driver for Witness {
    fn kind(&self) -> BaseKind {
        BaseKind::App
    }

    async fn handle(&self, _: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        Ok(Substance::Text(ping.method.to_string()))
    }
}

/// The class of right a method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Right {
    Read,
    Write,
    Execute,
}

/// Every method a client may send, with the right it needs.
fn methods() -> Vec<(Method, Right)> {
    use CmdMethod as C;
    use HttpMethod as H;
    let mut methods = vec![
        (Method::Cmd(C::Read), Right::Read),
        (Method::Http(H::Get), Right::Read),
        (Method::Http(H::Head), Right::Read),
        (Method::Http(H::Options), Right::Read),
        (Method::Cmd(C::Update), Right::Write),
        (Method::Http(H::Post), Right::Write),
        (Method::Http(H::Put), Right::Write),
        (Method::Http(H::Patch), Right::Write),
        (Method::Http(H::Delete), Right::Write),
        (Method::Ext("Go".into()), Right::Execute),
    ];
    for cmd in [C::Init, C::Command, C::Bounce, C::Knock, C::Greet, C::Log] {
        methods.push((Method::Cmd(cmd), Right::Execute));
    }
    methods
}

/// An Or mask granting what the upper-case letters of `csd-rwx` say.
fn mask(perms: &str) -> AccessGrantKind {
    AccessGrantKind::PermissionsMask(PermissionsMask {
        kind: MaskKind::Or,
        permissions: perms.parse().unwrap(),
    })
}

fn forbidden<T: std::fmt::Debug>(outcome: Result<T>, what: &str) {
    match outcome {
        Err(Error::Forbidden(_)) => {}
        other => panic!("{what}: expected 403 forbidden, got {other:?}"),
    }
}

/// One machine, its hyperuser, the cast of the module doc, and `localhost:app`.
struct World {
    node: Node,
    registry: Arc<dyn RegistryApi>,
    root: GateClient,
    reader: GateClient,
    writer: GateClient,
    runner: GateClient,
    lister: GateClient,
    deleter: GateClient,
    olive: GateClient,
    nobody: GateClient,
    anonymous: GateClient,
}

const APP: &str = "localhost:app";
const OLIVES: &str = "localhost:olive";

impl World {
    async fn start() -> World {
        Self::start_with(settings("a")).await
    }

    async fn start_with(settings: Settings) -> World {
        let registry = registry();
        let hyperverse = Arc::new(AppsBy::new(registry.clone(), Arc::new(Witness), None));
        let node = Node::start(settings, hyperverse).await.unwrap();
        let root = client(&node, Some(ADMIN_TOKEN)).await;
        let commit = Strategy::Commit;
        root.create("localhost", Kind::Space, Vec::new(), commit)
            .await
            .unwrap();
        root.create("localhost:users", Kind::UserBase, Vec::new(), commit)
            .await
            .unwrap();
        root.create(APP, Kind::App, Vec::new(), commit)
            .await
            .unwrap();
        let cast = [
            ("reader", "csd-Rwx", APP),
            ("writer", "csd-rWx", APP),
            ("runner", "csd-rwX", APP),
            ("lister", "cSd-rwx", "localhost"),
            ("deleter", "csD-rwx", "localhost"),
            ("olive", "Csd-rwx", "localhost"),
            ("nobody", "", ""),
        ];
        let mut clients = Vec::new();
        for (name, perms, on) in cast {
            let user = format!("localhost:users:{name}");
            let token = format!("{name}-token");
            root.create(user.as_str(), Kind::User, user_props(&token), commit)
                .await
                .unwrap();
            if !perms.is_empty() {
                root.grant(mask(perms), on.parse().unwrap(), user.parse().unwrap())
                    .await
                    .unwrap();
            }
            clients.push(client(&node, Some(&format!("{user}#{token}"))).await);
        }
        let anonymous = client(&node, None).await;
        let [reader, writer, runner, lister, deleter, olive, nobody] =
            <[GateClient; 7]>::try_from(clients).unwrap();
        olive
            .create(OLIVES, Kind::App, Vec::new(), commit)
            .await
            .expect("olive may create below localhost");
        World {
            node,
            registry,
            root,
            reader,
            writer,
            runner,
            lister,
            deleter,
            olive,
            nobody,
            anonymous,
        }
    }

    /// The users holding one right each on `localhost:app`.
    fn holders(&self) -> [(&GateClient, Right); 3] {
        [
            (&self.reader, Right::Read),
            (&self.writer, Right::Write),
            (&self.runner, Right::Execute),
        ]
    }

    /// Stops the machine, which must have nothing left in flight: every access
    /// decision and driver call it began has ended.
    async fn stop(self) {
        assert_eq!(self.node.stop().await, 0, "waves left in flight");
    }
}

async fn ping(client: &GateClient, to: &str, method: &Method) -> Result<Substance> {
    client
        .ping(p(to), method.clone(), Substance::Empty, WAIT)
        .await
}

async fn exists(world: &World, point: &str) -> bool {
    match world.root.get(p(point)).await {
        Ok(_) => true,
        Err(Error::NotFound(_)) => false,
        Err(e) => panic!("get {point}: {e}"),
    }
}

#[test]
fn each_method_class_needs_its_own_right() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let denied_before = world.node.machine.metrics.access_denied.get();
        let mut denials = 0;
        for (method, needs) in methods() {
            let name = Substance::Text(method.to_string());
            for (holder, right) in world.holders() {
                let answer = ping(holder, APP, &method).await;
                if right == needs {
                    assert_eq!(answer.unwrap(), name, "{right:?} lets {method} through");
                } else {
                    forbidden(answer, &format!("{method} with only {right:?}"));
                    denials += 1;
                }
            }
            for (who, agent) in [("nobody", &world.nobody), ("anonymous", &world.anonymous)] {
                forbidden(
                    ping(agent, APP, &method).await,
                    &format!("{method} as {who}"),
                );
                denials += 1;
            }
            let owned = ping(&world.olive, OLIVES, &method).await;
            assert_eq!(owned.unwrap(), name, "the owner may {method}");
            forbidden(
                ping(&world.olive, APP, &method).await,
                &format!("{method} by an owner elsewhere"),
            );
            denials += 1;
            let root = ping(&world.root, APP, &method).await;
            assert_eq!(root.unwrap(), name, "the hyperuser may {method}");
        }
        let denied = world.node.machine.metrics.access_denied.get() - denied_before;
        assert_eq!(denied, denials, "every refusal is counted once");
        world.stop().await;
    });
}

#[test]
fn a_grant_on_one_particle_opens_no_other() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        world
            .root
            .create("localhost:other", Kind::App, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        for (holder, right) in world.holders() {
            for (method, _) in methods() {
                forbidden(
                    ping(holder, "localhost:other", &method).await,
                    &format!("{method} on another particle with {right:?} on {APP}"),
                );
            }
        }
        world.stop().await;
    });
}

#[test]
fn clients_may_not_send_the_platforms_own_methods() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let star = world.node.machine.star_keys()[0].0.to_string();
        // A particle registered but placed nowhere: an `Assign` that got through would
        // host it.
        world
            .root
            .create(
                "localhost:unplaced",
                Kind::App,
                Vec::new(),
                Strategy::Commit,
            )
            .await
            .unwrap();
        let record = world.root.get(p("localhost:unplaced")).await.unwrap();
        let hosted = world.node.machine.hosted().await;
        let hyp = [
            HypMethod::Provision,
            HypMethod::Assign,
            HypMethod::Host,
            HypMethod::Init,
            HypMethod::Transport,
            HypMethod::Search,
            HypMethod::Migrate,
        ];
        for method in hyp.map(Method::Hyp) {
            for (who, agent) in [
                ("the hyperuser", &world.root),
                ("a user with x", &world.runner),
                ("the owner", &world.olive),
                ("anonymous", &world.anonymous),
            ] {
                for to in [APP, OLIVES, star.as_str()] {
                    let body = Substance::Record(record.clone());
                    let answer = agent.ping(p(to), method.clone(), body.clone(), WAIT).await;
                    match answer {
                        Err(Error::Forbidden(why)) => {
                            assert!(why.contains("platform's own"), "{why}")
                        }
                        other => panic!("{method} to {to} by {who}: {other:?}"),
                    }
                    let signal = agent.signal(p(to), method.clone(), body).await;
                    forbidden(signal, &format!("{method} signal to {to} by {who}"));
                }
            }
        }
        assert_eq!(
            world.node.machine.hosted().await,
            hosted,
            "no Hyp wave hosted anything"
        );
        world.stop().await;
    });
}

/// `by` grants `perms` on `on` to `nobody`.
async fn to_nobody(by: &GateClient, perms: &str, on: &str) -> Result<GrantId> {
    let nobody = Selector::exact(&p("localhost:users:nobody"));
    by.grant(mask(perms), on.parse().unwrap(), nobody).await
}

/// `by` grants `x` on `on` to `nobody`.
async fn x_to_nobody(by: &GateClient, on: &str) -> Result<GrantId> {
    to_nobody(by, "csd-rwX", on).await
}

/// A grant refused at the gate, saying what the granter may not give.
fn refused(outcome: Result<GrantId>, what: &str) {
    match outcome {
        Err(Error::Forbidden(why)) if why.contains("grant") => {}
        other => panic!("{what}: {other:?}"),
    }
}

#[test]
fn get_needs_read() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        forbidden(world.anonymous.get(p(APP)).await, "get as anonymous");
        forbidden(world.nobody.get(p(APP)).await, "get without a grant");
        forbidden(world.writer.get(p(APP)).await, "get with w");
        forbidden(world.runner.get(p(APP)).await, "get with x");
        forbidden(world.olive.get(p(APP)).await, "get by an owner elsewhere");
        assert_eq!(world.reader.get(p(APP)).await.unwrap().point(), &p(APP));
        assert_eq!(
            world.olive.get(p(OLIVES)).await.unwrap().point(),
            &p(OLIVES)
        );
        assert_eq!(world.root.get(p(APP)).await.unwrap().point(), &p(APP));
        world.stop().await;
    });
}

#[test]
fn select_needs_s_on_its_root() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let all: Selector = "localhost:**".parse().unwrap();
        forbidden(
            world.anonymous.select(all.clone()).await,
            "select as anonymous",
        );
        forbidden(
            world.nobody.select(all.clone()).await,
            "select without a grant",
        );
        forbidden(
            world.reader.select(all.clone()).await,
            "select with r below",
        );
        forbidden(world.olive.select(all.clone()).await, "select with c only");
        let listed = world.lister.select(all.clone()).await.unwrap();
        assert!(
            listed.iter().any(|s| s.point == p(APP)),
            "lister sees {APP}: {listed:?}"
        );
        let own: Selector = format!("{OLIVES}:**").parse().unwrap();
        world
            .olive
            .select(own)
            .await
            .expect("the owner may select below her own particle");
        world.stop().await;
    });
}

#[test]
fn select_answers_only_the_points_the_agent_may_see() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let all: Selector = "localhost:**".parse().unwrap();
        let everything = world.root.select(all.clone()).await.unwrap();
        assert!(
            everything
                .iter()
                .any(|s| s.point == p("localhost:users:nobody")),
            "the hyperuser sees every user: {everything:?}"
        );
        // `s` on localhost lists its children, not theirs.
        let listed = world.lister.select(all).await.unwrap();
        let listed: Vec<Point> = listed.into_iter().map(|s| s.point).collect();
        let children: Vec<Point> = everything
            .iter()
            .map(|s| s.point.clone())
            .filter(|point| point.parent() == Some(p("localhost")))
            .collect();
        assert_eq!(listed, children, "only the children of localhost");
        assert!(children.contains(&p(APP)) && children.contains(&p("localhost:users")));
        // An owner sees below what she owns.
        let olive = "localhost:olive:grove";
        world
            .olive
            .create(olive, Kind::Base, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        let own = world
            .olive
            .select(format!("{OLIVES}:+:**").parse().unwrap())
            .await;
        let own: Vec<Point> = own.unwrap().into_iter().map(|s| s.point).collect();
        assert_eq!(own, [p(OLIVES), p(olive)]);
        world.stop().await;
    });
}

#[test]
fn delete_needs_the_owner_super_or_d_on_the_parent() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        for i in 0..3 {
            let point = format!("localhost:doomed{i}");
            world
                .root
                .create(point.as_str(), Kind::App, Vec::new(), Strategy::Commit)
                .await
                .unwrap();
        }
        let refused: [(&str, &GateClient); 5] = [
            ("anonymous", &world.anonymous),
            ("nobody", &world.nobody),
            ("a user with rwx-style rights", &world.runner),
            ("an owner elsewhere", &world.olive),
            ("a user with s", &world.lister),
        ];
        for (who, agent) in refused {
            forbidden(agent.delete(p("localhost:doomed0")).await, who);
            assert!(
                exists(&world, "localhost:doomed0").await,
                "{who} deleted it"
            );
        }
        let deleted = world.deleter.delete(p("localhost:doomed0")).await.unwrap();
        assert_eq!(deleted, vec![p("localhost:doomed0")]);
        assert!(!exists(&world, "localhost:doomed0").await);
        world.olive.delete(p(OLIVES)).await.expect("the owner may");
        assert!(!exists(&world, OLIVES).await);
        world.root.delete(p("localhost:doomed1")).await.unwrap();
        assert!(!exists(&world, "localhost:doomed1").await);
        world.stop().await;
    });
}

#[test]
fn deleting_a_subtree_takes_the_right_to_delete_all_of_it() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        // `d` on localhost deletes its children, not the users below localhost:users.
        let users = world.deleter.delete(p("localhost:users")).await;
        match users {
            Err(Error::Forbidden(why)) => assert!(
                why.contains("would delete localhost:users:"),
                "names the particle it may not delete: {why}"
            ),
            other => panic!("deleting every user: {other:?}"),
        }
        assert!(
            exists(&world, "localhost:users:nobody").await,
            "nothing deleted"
        );
        assert!(exists(&world, "localhost:users").await, "nothing deleted");
        // The owner deletes below what she owns, down to what others own below that.
        let commit = Strategy::Commit;
        let theirs = "localhost:olive:theirs";
        world
            .root
            .create(theirs, Kind::Base, Vec::new(), commit)
            .await
            .unwrap();
        let deeper = "localhost:olive:theirs:deeper";
        world
            .root
            .create(deeper, Kind::Base, Vec::new(), commit)
            .await
            .unwrap();
        match world.olive.delete(p(OLIVES)).await {
            Err(Error::Forbidden(why)) => assert!(why.contains(deeper), "{why}"),
            other => panic!("deleting what the hyperuser owns below hers: {other:?}"),
        }
        assert!(exists(&world, deeper).await && exists(&world, OLIVES).await);
        world.root.delete(p(deeper)).await.unwrap();
        let deleted = world.olive.delete(p(OLIVES)).await.unwrap();
        assert_eq!(
            deleted,
            [p(theirs), p(OLIVES)],
            "d on her own reaches its children"
        );
        world.stop().await;
    });
}

#[test]
fn create_ensure_answers_an_existing_particle_only_to_who_may_read_it() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        // olive may create below localhost but not read localhost:app.
        for (kind, strategy) in [
            (Kind::App, Strategy::Ensure),
            (Kind::Base, Strategy::Ensure),
            (Kind::Base, Strategy::Commit),
        ] {
            let answer = world.olive.create(APP, kind, Vec::new(), strategy).await;
            match answer {
                Err(Error::AlreadyExists(why)) => {
                    assert_eq!(why, format!("particle {APP}"), "nothing about it")
                }
                other => panic!("{strategy:?} {kind} over {APP}: {other:?}"),
            }
        }
        let mine = world
            .olive
            .create(OLIVES, Kind::App, Vec::new(), Strategy::Ensure);
        assert_eq!(mine.await.unwrap().point(), &p(OLIVES), "her own");
        let mismatch = world
            .olive
            .create(OLIVES, Kind::Base, Vec::new(), Strategy::Ensure);
        match mismatch.await {
            Err(Error::AlreadyExists(why)) => assert!(why.contains("App"), "{why}"),
            other => panic!("ensure of her own as another kind: {other:?}"),
        }
        let root = world
            .root
            .create(APP, Kind::App, Vec::new(), Strategy::Ensure);
        assert_eq!(root.await.unwrap().point(), &p(APP));
        world.stop().await;
    });
}

#[test]
fn stars_and_access_take_a_logged_in_agent() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        forbidden(world.anonymous.stars().await, "stars as anonymous");
        assert!(!world.nobody.stars().await.unwrap().is_empty());
        let anonymous = Point::anonymous();
        forbidden(
            world.anonymous.access(anonymous.clone(), p(APP)).await,
            "access as anonymous",
        );
        let reader = p("localhost:users:reader");
        let own = world.reader.access(reader.clone(), p(APP)).await.unwrap();
        assert!(own.permissions().particle.read, "{own}");
        forbidden(
            world.nobody.access(reader.clone(), p(APP)).await,
            "another agent's access, without r on it",
        );
        // Missing and not visible answer alike, except to the hyperuser.
        let nobody = p("localhost:users:nobody");
        let missing = world
            .nobody
            .access(nobody.clone(), p("localhost:ghost"))
            .await;
        let hidden = world.nobody.access(nobody, p(APP)).await;
        assert_eq!(missing.unwrap(), hidden.unwrap());
        let root = world.root.access(reader, p("localhost:ghost")).await;
        assert!(matches!(root, Err(Error::NotFound(_))), "{root:?}");
        world.stop().await;
    });
}

#[test]
fn migrate_needs_the_owner_or_super() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let stars: Vec<Point> = world
            .node
            .machine
            .star_keys()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let elsewhere = |point: &str| {
            let world = &world;
            let stars = stars.clone();
            let point = p(point);
            async move {
                let record = world.root.get(point).await.unwrap();
                let at = record.location.star.expect("placed");
                stars.into_iter().find(|s| *s != at).unwrap()
            }
        };
        let to = elsewhere(APP).await;
        world
            .root
            .grant(
                mask("CSD-RWX"),
                APP.parse().unwrap(),
                "localhost:users:nobody".parse().unwrap(),
            )
            .await
            .unwrap();
        for (who, agent) in [
            ("anonymous", &world.anonymous),
            ("a user with every right but ownership", &world.nobody),
            ("an owner elsewhere", &world.olive),
        ] {
            forbidden(agent.migrate(p(APP), to.clone()).await, who);
        }
        let still = world.root.get(p(APP)).await.unwrap();
        assert_ne!(still.location.star.as_ref(), Some(&to), "nobody moved it");
        let to = elsewhere(OLIVES).await;
        let moved = world.olive.migrate(p(OLIVES), to.clone()).await.unwrap();
        assert_eq!(moved.location.star, Some(to), "the owner moved it");
        let to = elsewhere(APP).await;
        let moved = world.root.migrate(p(APP), to.clone()).await.unwrap();
        assert_eq!(moved.location.star, Some(to), "the hyperuser moved it");
        world.stop().await;
    });
}

#[test]
fn a_grant_is_stored_only_when_its_granter_has_the_authority() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let go = Method::Ext("Go".into());
        // Those without it are refused, and give nothing.
        let anonymous_self = world.anonymous.grant(
            mask("csd-rwX"),
            APP.parse().unwrap(),
            Selector::exact(&Point::anonymous()),
        );
        refused(anonymous_self.await, "anonymous may not grant");
        forbidden(
            ping(&world.anonymous, APP, &go).await,
            "anonymous after its own grant",
        );
        refused(to_nobody(&world.nobody, "csd-rwX", APP).await, "x");
        // Rights held by a grant are no authority: not even to pass on what one holds.
        refused(to_nobody(&world.runner, "csd-rwX", APP).await, "x it holds");
        refused(to_nobody(&world.reader, "csd-Rwx", APP).await, "r it holds");
        forbidden(
            ping(&world.nobody, APP, &go).await,
            "nobody after the refused grants",
        );
        let restrict = AccessGrantKind::PermissionsMask(PermissionsMask {
            kind: MaskKind::And,
            permissions: Permissions::none(),
        });
        let everyone = "localhost:users:*".parse().unwrap();
        let restriction = world.runner.grant(restrict, APP.parse().unwrap(), everyone);
        refused(restriction.await, "restricting others takes the owner");
        let super_grant = world.olive.grant(
            AccessGrantKind::Super,
            OLIVES.parse().unwrap(),
            Selector::exact(&p("localhost:users:nobody")),
        );
        refused(super_grant.await, "owning is not super");
        // Owners and supers do.
        to_nobody(&world.root, "csd-rwX", APP).await.unwrap();
        assert_eq!(
            ping(&world.nobody, APP, &go).await.unwrap(),
            text("Ext<Go>")
        );
        forbidden(
            ping(&world.nobody, OLIVES, &go).await,
            "x on olive's, not yet",
        );
        to_nobody(&world.olive, "csd-rwX", OLIVES).await.unwrap();
        assert_eq!(
            ping(&world.nobody, OLIVES, &go).await.unwrap(),
            text("Ext<Go>")
        );
        world.stop().await;
    });
}

/// A grant made on behalf of a particle (`--by`) is ignored while that particle has no
/// authority on the point, counts once a chown gives it the point, and stops counting
/// when the point changes hands again. Acting as a particle takes controlling it.
#[test]
fn a_grant_made_by_a_particle_counts_while_it_owns_the_point() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let go = Method::Ext("Go".into());
        let writer = p("localhost:users:writer");
        let nobody = Selector::exact(&p("localhost:users:nobody"));
        let x = || mask("csd-rwX");
        let as_writer = world
            .root
            .grant_as(
                x(),
                APP.parse().unwrap(),
                nobody.clone(),
                Some(writer.clone()),
            )
            .await
            .expect("the hyperuser acts as anyone");
        let listed = world.root.grants(APP.parse().unwrap()).await.unwrap();
        let state = &listed.iter().find(|g| g.id == as_writer).unwrap().state;
        assert!(
            matches!(state, GrantState::Ignored(why) if why.contains("owning")),
            "{state:?}"
        );
        forbidden(
            ping(&world.nobody, APP, &go).await,
            "the writer owns nothing",
        );

        let app: Selector = APP.parse().unwrap();
        assert_eq!(
            world
                .root
                .chown(app.clone(), writer.clone(), None)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            ping(&world.nobody, APP, &go).await.unwrap(),
            text("Ext<Go>"),
            "the writer owns the app now: its grant counts"
        );
        let listed = world.root.grants(app.clone()).await.unwrap();
        let state = &listed.iter().find(|g| g.id == as_writer).unwrap().state;
        assert_eq!(*state, GrantState::Counting);
        // The writer owns it: it acts for itself, and a stranger may not act as it.
        world
            .writer
            .grant(
                x(),
                APP.parse().unwrap(),
                Selector::exact(&p("localhost:users:reader")),
            )
            .await
            .expect("the owner grants");
        let stranger = world
            .nobody
            .grant_as(
                x(),
                APP.parse().unwrap(),
                nobody.clone(),
                Some(writer.clone()),
            )
            .await;
        forbidden(stranger, "acting as a particle one does not control");
        forbidden(
            world
                .nobody
                .chown(app.clone(), p("localhost:users:nobody"), None)
                .await,
            "chown takes super",
        );
        let unknown = world
            .root
            .chown(app.clone(), p("localhost:users:ghost"), None)
            .await;
        assert!(matches!(unknown, Err(Error::NotFound(_))), "{unknown:?}");
        // Grants are listed where the agent may read: the reader reads the app, nobody
        // reads nothing (and anonymous may not ask).
        let everything: Selector = "+:**".parse().unwrap();
        let seen = world.reader.grants(everything.clone()).await.unwrap();
        assert!(
            !seen.is_empty() && seen.iter().all(|g| g.id.root == p(APP)),
            "{seen:?}"
        );
        assert!(
            world
                .nobody
                .grants(everything.clone())
                .await
                .unwrap()
                .is_empty()
        );
        forbidden(world.anonymous.grants(everything).await, "anonymous");

        world
            .root
            .chown(app, Point::hyperuser(), None)
            .await
            .unwrap();
        forbidden(
            ping(&world.nobody, APP, &go).await,
            "the app changed hands again: the writer's grant is ignored",
        );
        world.stop().await;
    });
}

#[test]
fn revoke_takes_the_granter_or_super() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let go = Method::Ext("Go".into());
        let by_root: GrantId = x_to_nobody(&world.root, APP).await.unwrap();
        let by_olive: GrantId = x_to_nobody(&world.olive, OLIVES).await.unwrap();
        for (who, agent) in [
            ("anonymous", &world.anonymous),
            ("the grantee", &world.nobody),
            ("a user with x", &world.runner),
            ("another granter", &world.olive),
        ] {
            forbidden(agent.revoke(by_root.clone()).await, who);
        }
        assert_eq!(
            ping(&world.nobody, APP, &go).await.unwrap(),
            text("Ext<Go>"),
            "the grant still holds"
        );
        world.root.revoke(by_root).await.expect("its granter may");
        forbidden(ping(&world.nobody, APP, &go).await, "after the revoke");
        forbidden(
            world.runner.revoke(by_olive.clone()).await,
            "not olive's granter",
        );
        world
            .olive
            .revoke(by_olive.clone())
            .await
            .expect("olive may");
        forbidden(
            ping(&world.nobody, OLIVES, &go).await,
            "after olive's revoke",
        );
        let again = x_to_nobody(&world.olive, OLIVES).await.unwrap();
        world
            .root
            .revoke(again)
            .await
            .expect("super may revoke anyone's");
        forbidden(
            ping(&world.nobody, OLIVES, &go).await,
            "after the super revoke",
        );
        world.stop().await;
    });
}

#[test]
fn a_decision_is_reused_until_access_ttl_unless_a_grant_goes_through_a_gate() {
    actix_rt::System::new().block_on(async {
        let world = World::start_with(Settings {
            access_ttl_ms: 1000,
            ..settings("a")
        })
        .await;
        let go = Method::Ext("Go".into());
        forbidden(ping(&world.nobody, APP, &go).await, "before any grant");
        // A grant written to the registry behind the machine's back is not seen while
        // the refusal is cached...
        let grant = AccessGrant {
            kind: mask("csd-rwX"),
            on_point: APP.parse().unwrap(),
            to_point: Selector::exact(&p("localhost:users:nobody")),
            by_particle: Point::hyperuser(),
        };
        world.registry.grant(&grant).await.unwrap();
        forbidden(ping(&world.nobody, APP, &go).await, "the cached refusal");
        // ...and is once the decision expires.
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            match ping(&world.nobody, APP, &go).await {
                Ok(answer) => break assert_eq!(answer, text("Ext<Go>")),
                Err(Error::Forbidden(_)) if std::time::Instant::now() < deadline => {
                    actix_rt::time::sleep(std::time::Duration::from_millis(20)).await
                }
                other => panic!("after access_ttl_ms: {other:?}"),
            }
        }
        // A revoke through a gate drops the cached decisions at once.
        let id = x_to_nobody(&world.root, OLIVES).await.unwrap();
        assert_eq!(
            ping(&world.nobody, OLIVES, &go).await.unwrap(),
            text("Ext<Go>")
        );
        world.root.revoke(id).await.unwrap();
        forbidden(
            ping(&world.nobody, OLIVES, &go).await,
            "right after the revoke",
        );
        world.stop().await;
    });
}

/// `grants` answers at most 4096 grants at once, then asks for a narrower selector.
#[test]
fn grants_lists_a_bounded_number_at_once() {
    actix_rt::System::new().block_on(async {
        let world = World::start().await;
        let nobody = Selector::exact(&p("localhost:users:nobody"));
        // 17 points of 241 grants each: 4097, over the bound, none over a point's 256.
        for i in 0..17 {
            let point = format!("{APP}:g{i}");
            world
                .root
                .create(point.as_str(), Kind::Base, Vec::new(), Strategy::Commit)
                .await
                .unwrap();
            for _ in 0..241 {
                world
                    .root
                    .grant(mask("csd-rwX"), point.parse().unwrap(), nobody.clone())
                    .await
                    .unwrap();
            }
        }
        let everything = world.root.grants("+:**".parse().unwrap()).await;
        assert!(
            matches!(&everything, Err(Error::BadRequest(why)) if why.contains("narrow")),
            "{everything:?}"
        );
        let one = world
            .root
            .grants(format!("{APP}:g3").parse().unwrap())
            .await;
        assert_eq!(one.unwrap().len(), 241);
        world.stop().await;
    });
}

//! The built-in drivers against a real (in-memory) registry.

use drivers::container::ContainerDriver;
use drivers::user::{TOKEN_HASH, TokenCheck, UserDriver, token_hash, verify_token};
use hyperverse_core::budget::DEFAULT_WAVE_BUDGET;
use hyperverse_core::driver::{Driver, DriverCtx, NoOutbound};
use hyperverse_core::particle::PropertyMod;
use hyperverse_core::registry::{Registration, RegistryApi};
use hyperverse_core::wave::{CmdMethod, Method, Ping, Signal, Substance, WaveIdGen};
use hyperverse_core::{Agent, BaseKind, Error, Kind, Point};
use registry_svc::backend::memory::MemoryRegistry;

fn p(s: &str) -> Point {
    s.parse().unwrap()
}

fn ping(to: &str, method: Method, body: Substance) -> Ping {
    let mut ping = Ping::new(
        WaveIdGen::new(1).next_id(),
        p("GLOBAL::hyperuser"),
        p(to),
        Agent::HyperUser,
        method,
    );
    ping.body = body;
    ping
}

async fn registry() -> MemoryRegistry {
    let registry = MemoryRegistry::default();
    for (point, kind) in [("localhost", Kind::Space), ("localhost:base", Kind::Base)] {
        registry
            .register(&Registration::new(p(point), kind, Point::hyperuser()))
            .await
            .unwrap();
    }
    registry
}

#[tokio::test]
async fn a_base_bounces_the_body_and_reads_its_record() {
    let registry = registry().await;
    let star = p("LOCAL::central");
    let ctx = DriverCtx {
        star: &star,
        registry: &registry,
        outbound: &NoOutbound,
        budget: DEFAULT_WAVE_BUDGET,
    };
    let base = ContainerDriver::new(BaseKind::Base);
    assert!(base.allows_children());

    let body = Substance::Text("hello".into());
    let answer = base
        .handle(
            ctx,
            &ping(
                "localhost:base",
                Method::Cmd(CmdMethod::Bounce),
                body.clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(answer, body);

    let Substance::Record(record) = base
        .handle(
            ctx,
            &ping(
                "localhost:base",
                Method::Cmd(CmdMethod::Read),
                Substance::Empty,
            ),
        )
        .await
        .unwrap()
    else {
        panic!("Read answers a record");
    };
    assert_eq!(record.kind(), Kind::Base);

    let err = base
        .handle(
            ctx,
            &ping(
                "localhost:base",
                Method::Ext("Launch".into()),
                Substance::Empty,
            ),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::BadRequest(ref m) if m.contains("Ext<Launch>")),
        "{err}"
    );

    let err = base
        .handle(
            ctx,
            &ping(
                "localhost:nope",
                Method::Cmd(CmdMethod::Read),
                Substance::Empty,
            ),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "{err}");
}

#[tokio::test]
async fn signals_are_handled_and_their_answers_dropped() {
    let registry = registry().await;
    let star = p("LOCAL::central");
    let ctx = DriverCtx {
        star: &star,
        registry: &registry,
        outbound: &NoOutbound,
        budget: DEFAULT_WAVE_BUDGET,
    };
    let base = ContainerDriver::new(BaseKind::Base);
    let signal = |method| Signal {
        id: WaveIdGen::new(2).next_id(),
        from: p("localhost"),
        to: p("localhost:base"),
        agent: Agent::Anonymous,
        method,
        headers: Default::default(),
        body: Substance::Empty,
        hops: 0,
        budget: DEFAULT_WAVE_BUDGET,
    };
    base.signal(ctx, &signal(Method::Cmd(CmdMethod::Bounce)))
        .await
        .unwrap();
    let refused = base
        .signal(ctx, &signal(Method::Ext("Nope".into())))
        .await
        .unwrap_err();
    assert!(matches!(refused, Error::BadRequest(_)), "{refused}");
}

#[tokio::test]
async fn a_user_token_is_verified_against_its_hash_only() {
    let registry = registry().await;
    let mut reg = Registration::new(p("localhost:alice"), Kind::User, Point::hyperuser());
    reg.properties = vec![PropertyMod::set(TOKEN_HASH, token_hash("s3cret").unwrap())];
    registry.register(&reg).await.unwrap();
    let record = registry.record(&p("localhost:alice")).await.unwrap();
    assert_ne!(
        record.details.properties[TOKEN_HASH].value, "s3cret",
        "only the hash is stored"
    );
    assert_eq!(verify_token(&record, "s3cret"), TokenCheck::Valid);
    assert_eq!(verify_token(&record, "s3cret "), TokenCheck::Invalid);
    assert_eq!(verify_token(&record, ""), TokenCheck::Invalid);

    let tokenless = registry.record(&p("localhost:base")).await.unwrap();
    let no_login = verify_token(&tokenless, "");
    assert_eq!(no_login, TokenCheck::NoToken, "no hash, no login");

    let star = p("LOCAL::central");
    let ctx = DriverCtx {
        star: &star,
        registry: &registry,
        outbound: &NoOutbound,
        budget: DEFAULT_WAVE_BUDGET,
    };
    assert!(!UserDriver.allows_children());
    let body = Substance::Text("hi".into());
    let answer = UserDriver
        .handle(
            ctx,
            &ping(
                "localhost:alice",
                Method::Cmd(CmdMethod::Bounce),
                body.clone(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(answer, body);
}

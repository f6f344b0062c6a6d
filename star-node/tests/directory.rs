//! A machine in the registry's star directory, in one process over the in-memory
//! registry: its stars are listed from the start with what they host, each heartbeat
//! reports the particles a star hosts as its load, a star the directory forgot (say
//! registry-svc restarted on the in-memory backend) registers again at its next
//! heartbeat, and a stopped machine leaves.

mod local;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyperverse_core::registry::{RegistryApi, StarEntry, Strategy};
use hyperverse_core::{BaseKind, Kind, Point};
use local::*;
use star_node::config::Settings;
use star_node::hyperverse::Standard;
use star_node::node::Node;

async fn listed(registry: &dyn RegistryApi) -> Vec<StarEntry> {
    registry.list_stars().await.unwrap()
}

/// Polls the registry's listing until `check` holds, or panics after `WAIT`.
async fn until_listed(
    registry: &dyn RegistryApi,
    what: &str,
    check: impl Fn(&[StarEntry]) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    loop {
        let stars = listed(registry).await;
        if check(&stars) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: {stars:?}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_machines_stars_are_listed_with_what_they_host_and_their_load() {
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let settings = Settings {
            heartbeat_ms: 50,
            ..settings("a")
        };
        let a = Node::start(settings, standard).await.unwrap();
        let stars = listed(registry.as_ref()).await;
        let keys: Vec<String> = stars.iter().map(|s| s.star.to_string()).collect();
        assert_eq!(
            keys,
            [
                "<<a>>::central",
                "<<a>>::maelstrom",
                "<<a>>::scribe",
                "<<a>>::super"
            ]
        );
        for star in &stars {
            assert_eq!(star.machine, "a");
            assert_eq!(star.gate, a.gate.to_string());
            assert!(star.hosts.contains(&BaseKind::Base), "{star:?}");
            assert!(star.hosts.contains(&BaseKind::Mechtron), "{star:?}");
            assert_eq!(star.load, 0);
        }
        let hv = client(&a, Some(ADMIN_TOKEN)).await;
        hv.create("localhost", Kind::Space, Vec::new(), Strategy::Commit)
            .await
            .unwrap();
        for i in 0..12 {
            let point = format!("localhost:b{i}");
            hv.create(point.as_str(), Kind::Base, Vec::new(), Strategy::Commit)
                .await
                .unwrap();
        }
        let hosted = a.machine.hosted().await as u64;
        assert_eq!(hosted, 13, "localhost and its twelve");
        // Each star counts its own in `hv_star_particles`, labelled by its key.
        let metrics = a.machine.metrics.render();
        let mut counted = 0.0;
        for star in &keys {
            let label = format!("star=\"{star}\"");
            counted += metrics
                .lines()
                .filter(|l| l.starts_with("hv_star_particles{") && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>();
        }
        assert_eq!(counted, 13.0, "{metrics}");
        until_listed(
            registry.as_ref(),
            "loads add up to what is hosted",
            |stars| stars.iter().map(|s| s.load).sum::<u64>() == hosted,
        )
        .await;
        assert_eq!(a.stop().await, 0, "nothing left in flight");
    });
}

#[test]
fn a_star_the_directory_forgot_registers_again_at_its_next_heartbeat() {
    actix_rt::System::new().block_on(async {
        let registry = registry();
        let standard = Arc::new(Standard::new(registry.clone(), SECRET.into()));
        let settings = Settings {
            heartbeat_ms: 100,
            ..settings("a")
        };
        let a = Node::start(settings, standard).await.unwrap();
        let central: Point = "<<a>>::central".parse().unwrap();
        registry.deregister_star(&central).await.unwrap();
        assert_eq!(listed(registry.as_ref()).await.len(), 3);
        until_listed(registry.as_ref(), "central registers again", |stars| {
            stars
                .iter()
                .any(|s| s.star == central && s.gate == a.gate.to_string())
        })
        .await;
        assert_eq!(a.stop().await, 0);
        assert!(
            listed(registry.as_ref()).await.is_empty(),
            "a stopped machine leaves the directory"
        );
    });
}

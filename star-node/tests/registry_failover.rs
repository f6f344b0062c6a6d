//! A star-node that lists several registry-svc instances (`HV_STAR_REGISTRY`,
//! comma-separated) over the same Redis shards, with the real binaries: it starts
//! though the first one listed is down, and when the instance it uses dies (`kill -9`)
//! it goes on creating and pinging particles through the next one.

mod support;

use support::*;

#[test]
fn a_node_listing_two_registries_outlives_the_one_it_uses() {
    let shards: Vec<RedisServer> = (0..2).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = shards.iter().map(RedisServer::url).collect();
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut first = registry_svc(dir.path(), &urls, 3000);
    let second = registry_svc(dir.path(), &urls, 3000);
    let down = format!("127.0.0.1:{}", registry::free_port());
    let listed = format!("{down}, {},{}", first.addr("rpc"), second.addr("rpc"));

    let mut command = star_node_command(dir.path(), "a", first.addr("rpc"), SECRET);
    command.env("HV_STAR_REGISTRY", &listed);
    let node = Process::start(command, "star-node ready");
    let gate = node.addr("gate");
    hv_ok(gate, &["create", "localhost", "Space"]);
    hv_ok(gate, &["create", "localhost:before", "Base"]);
    let served = |registry: &Process| {
        let metrics = scrape(registry.addr("metrics"));
        metric(
            &metrics,
            "hv_registry_requests_total",
            &[("op", "register")],
        )
    };
    assert_eq!(served(&first), 2.0, "the first listed that answers serves");

    first.kill9();
    hv_ok(gate, &["create", "localhost:after", "Base"]);
    assert_eq!(served(&second), 1.0, "the next one serves now");
    for point in ["localhost:before", "localhost:after"] {
        let answer = hv_ok(gate, &["ping", point, "--body", "still here"]);
        assert!(answer.contains("still here"), "{point}: {answer}");
    }
}

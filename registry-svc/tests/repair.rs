//! `check` and `repair` on real Redis shards: a small hyperverse built with the real
//! backend, damaged with raw Redis commands the way crashes and lost shards damage it,
//! then checked (exactly those findings), repaired (the repairable ones), checked again.
//! Also a clean hyperverse, a shard down, a ring that does not match the data, and the
//! binary's exit codes and text.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use hyperverse_core::registry::{Registration, RegistryApi, StarEntry};
use hyperverse_core::{BaseKind, Error, Kind, Point, Selector, StarSub};
use registry_svc::backend::redis::{RedisConfig, RedisRegistry};
use registry_svc::repair::{self, Example, Problem, RepairOptions, Report};
use support::{RedisServer, free_port, shared_urls, unique_prefix};

const TTL: Duration = Duration::from_secs(10);

fn p(text: &str) -> Point {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A registry under its own prefix, and raw access to the shard of any point.
struct Hv {
    registry: RedisRegistry,
    urls: Vec<String>,
}

impl Hv {
    async fn new(urls: Vec<String>, prefix: &str) -> Self {
        let mut config = RedisConfig::new(urls.clone());
        config.prefix = prefix.to_string();
        let registry = RedisRegistry::connect(config).await.expect("valid config");
        Self { registry, urls }
    }

    async fn create(&self, points: &[&str]) {
        for point in points {
            let kind = if p(point).depth() == 1 {
                Kind::Space
            } else {
                Kind::Base
            };
            let registration = Registration::new(p(point), kind, Point::hyperuser());
            self.registry
                .register(&registration)
                .await
                .unwrap_or_else(|e| panic!("register {point}: {e}"));
        }
    }

    async fn star(&self, star: &str) {
        let entry = StarEntry {
            star: p(star),
            kind: StarSub::Super,
            machine: "m".into(),
            gate: "127.0.0.1:1".into(),
            hosts: vec![BaseKind::Base],
            load: 0,
        };
        self.registry.register_star(&entry).await.expect("star");
    }

    /// Runs a raw command on `point`'s shard.
    fn raw<T: redis::FromRedisValue>(&self, point: &str, cmd: &mut redis::Cmd) -> T {
        let url = &self.urls[self.registry.shard_index(&p(point))];
        let mut conn = redis::Client::open(url.as_str())
            .and_then(|c| c.get_connection())
            .unwrap_or_else(|e| panic!("{url}: {e}"));
        cmd.query(&mut conn)
            .unwrap_or_else(|e| panic!("{url}: {e}"))
    }

    fn rec(&self, point: &str) -> String {
        self.registry.keys().rec(&p(point))
    }

    fn kids(&self, point: &str) -> String {
        self.registry.keys().kids(&p(point))
    }

    fn listed(&self, parent: &str, child: &str) -> bool {
        self.raw(
            parent,
            redis::cmd("SISMEMBER").arg(self.kids(parent)).arg(child),
        )
    }

    async fn check(&self) -> Report {
        repair::check(&self.registry, TTL).await.expect("check")
    }

    async fn repair(&self, delete_orphans: bool) -> repair::RepairOutcome {
        let options = RepairOptions {
            star_ttl: TTL,
            delete_orphans,
        };
        repair::repair(&self.registry, options)
            .await
            .expect("repair")
    }
}

fn examples(report: &Report, problem: Problem) -> Vec<(String, String)> {
    let findings = report.get(problem);
    assert_eq!(
        findings.count,
        findings.examples.len() as u64,
        "{problem:?}: every finding has its example here"
    );
    let pairs = findings.examples.iter();
    pairs
        .map(|Example { subject, related }| (subject.clone(), related.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut pairs: Vec<_> = list
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    pairs.sort();
    pairs
}

const TREE: [&str; 10] = [
    "alpha",
    "alpha:a1",
    "alpha:a1:x",
    "alpha:a1:y",
    "alpha:a2",
    "alpha:a3",
    "beta",
    "beta:b1",
    "beta:b1:z",
    "beta:b2",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_exactly_the_damage_and_repair_fixes_what_it_can() {
    let hv = Hv::new(shared_urls(), &unique_prefix()).await;
    hv.create(&TREE).await;
    hv.star("LOCAL::star0").await;
    let registry = &hv.registry;
    registry
        .assign_star(&p("alpha:a1"), &p("LOCAL::star0"))
        .await
        .expect("a live star");
    registry
        .assign_host(&p("alpha:a1:y"), &p("alpha:a1"))
        .await
        .expect("a registered host");
    assert!(
        hv.check().await.is_clean(),
        "{}",
        hv.check().await.to_text()
    );

    // A register that crashed after linking (or a shard that lost the record).
    let _: () = hv.raw("alpha:a2", redis::cmd("DEL").arg(hv.rec("alpha:a2")));
    // A record its parent's index lost.
    let _: () = hv.raw(
        "alpha:a1",
        redis::cmd("SREM")
            .arg(hv.kids("alpha:a1"))
            .arg("alpha:a1:x"),
    );
    // A parent's record lost, its children left.
    let _: () = hv.raw("beta:b1", redis::cmd("DEL").arg(hv.rec("beta:b1")));
    // On a star that is not in the directory; hosted by a particle that is not there.
    let _: () = hv.raw(
        "alpha:a3",
        redis::cmd("HSET")
            .arg(hv.rec("alpha:a3"))
            .arg("st")
            .arg("LOCAL::ghost"),
    );
    let _: () = hv.raw(
        "beta:b2",
        redis::cmd("HSET")
            .arg(hv.rec("beta:b2"))
            .arg("h")
            .arg("beta:gone"),
    );

    let found = hv.check().await;
    let text = found.to_text();
    assert_eq!(found.records, 8, "{text}");
    assert_eq!(
        examples(&found, Problem::OrphanEntry),
        pairs(&[("alpha:a2", "alpha"), ("beta:b1", "beta")]),
        "{text}"
    );
    assert_eq!(
        examples(&found, Problem::UnlinkedRecord),
        pairs(&[("alpha:a1:x", "alpha:a1")]),
        "{text}"
    );
    assert_eq!(
        examples(&found, Problem::ParentlessRecord),
        pairs(&[("beta:b1:z", "beta:b1")]),
        "{text}"
    );
    assert_eq!(
        examples(&found, Problem::DanglingStar),
        pairs(&[("alpha:a3", "LOCAL::ghost")]),
        "{text}"
    );
    assert_eq!(
        examples(&found, Problem::DanglingHost),
        pairs(&[("beta:b2", "beta:gone")]),
        "{text}"
    );
    assert_eq!(found.count(Problem::MisplacedKey), 0, "{text}");
    assert_eq!(
        found.count(Problem::Unreadable),
        0,
        "star keys are skipped: {text}"
    );
    assert_eq!(found.total(), 6, "{text}");
    assert!(text.contains("alpha:a2 in the index of alpha"), "{text}");
    assert!(text.contains("alpha:a3 on star LOCAL::ghost"), "{text}");

    // Only the directory's live stars count: with a TTL the star has outlived, its
    // particle's star is dangling too.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let short = repair::check(registry, Duration::from_millis(10))
        .await
        .expect("check");
    assert_eq!(short.count(Problem::DanglingStar), 2, "{}", short.to_text());

    // Repair fixes all but the record whose parent is gone, and touches nothing else.
    let outcome = hv.repair(false).await;
    let text = outcome.to_text();
    assert!(outcome.refused.is_none(), "{text}");
    assert_eq!(outcome.found, found, "{text}");
    assert_eq!(outcome.fixed(Problem::OrphanEntry), 2, "{text}");
    assert_eq!(outcome.fixed(Problem::UnlinkedRecord), 1, "{text}");
    assert_eq!(outcome.fixed(Problem::DanglingStar), 1, "{text}");
    assert_eq!(outcome.fixed(Problem::DanglingHost), 1, "{text}");
    assert_eq!(outcome.fixed(Problem::ParentlessRecord), 0, "{text}");
    assert_eq!(outcome.after.total(), 1, "{text}");
    assert_eq!(outcome.after.count(Problem::ParentlessRecord), 1, "{text}");
    assert!(text.contains("after repair:"), "{text}");

    assert!(!hv.listed("alpha", "alpha:a2") && !hv.listed("beta", "beta:b1"));
    assert!(hv.listed("alpha:a1", "alpha:a1:x"));
    let below: Vec<Point> = registry
        .select(&"alpha:**".parse::<Selector>().expect("selector"))
        .await
        .expect("select")
        .into_iter()
        .map(|s| s.point)
        .collect();
    assert!(below.contains(&p("alpha:a1:x")), "visible again: {below:?}");
    let record =
        |point: &'static str| async move { registry.record(&p(point)).await.expect("record") };
    assert_eq!(record("alpha:a3").await.location.star, None);
    assert_eq!(record("beta:b2").await.location.host, None);
    assert_eq!(
        record("alpha:a1").await.location.star,
        Some(p("LOCAL::star0"))
    );
    assert_eq!(
        record("alpha:a1:y").await.location.host,
        Some(p("alpha:a1"))
    );
    record("beta:b1:z").await; // user data is not deleted unless asked

    let again = hv.check().await;
    assert_eq!(again.total(), 1, "{}", again.to_text());
    assert_eq!(again.count(Problem::ParentlessRecord), 1);

    // Asked to, repair deletes the record without a parent; then all is clean.
    let outcome = hv.repair(true).await;
    assert_eq!(
        outcome.fixed(Problem::ParentlessRecord),
        1,
        "{}",
        outcome.to_text()
    );
    assert!(outcome.after.is_clean(), "{}", outcome.to_text());
    assert!(matches!(
        registry.record(&p("beta:b1:z")).await,
        Err(Error::NotFound(_))
    ));
    assert!(hv.check().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_hyperverse_checks_clean_and_repair_changes_nothing() {
    let hv = Hv::new(shared_urls(), &unique_prefix()).await;
    hv.create(&TREE).await;
    hv.star("LOCAL::star1").await;
    hv.registry
        .assign_star(&p("beta:b2"), &p("LOCAL::star1"))
        .await
        .expect("star");
    let report = hv.check().await;
    assert!(report.is_clean(), "{}", report.to_text());
    assert_eq!(report.records, TREE.len() as u64);
    assert_eq!(report.shards, shared_urls());
    assert!(report.to_text().contains("clean"), "{}", report.to_text());

    let outcome = hv.repair(true).await;
    assert!(outcome.passes.is_empty(), "{}", outcome.to_text());
    assert!(outcome.to_text().contains("nothing to repair"));
    assert_eq!(hv.check().await.records, TREE.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shard_down_fails_the_check_naming_it() {
    let mut servers: Vec<RedisServer> = (0..3).map(|_| RedisServer::start()).collect();
    let urls: Vec<String> = servers.iter().map(RedisServer::url).collect();
    let hv = Hv::new(urls.clone(), "hv").await;
    hv.create(&TREE).await;
    servers[1].stop();
    let err = repair::check(&hv.registry, TTL).await.unwrap_err();
    let shown = err.to_string();
    assert!(matches!(err, Error::Unavailable(_)), "{shown}");
    assert!(shown.contains(&urls[1]), "names the shard: {shown}");
    assert!(
        !shown.contains(&urls[0]) && !shown.contains(&urls[2]),
        "{shown}"
    );
    assert!(shown.contains("nothing was checked"), "{shown}");
    let options = RepairOptions {
        star_ttl: TTL,
        delete_orphans: true,
    };
    let err = repair::repair(&hv.registry, options).await.unwrap_err();
    assert!(err.to_string().contains(&urls[1]), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ring_unlike_the_data_is_reported_and_repair_refuses() {
    let prefix = unique_prefix();
    let hv = Hv::new(shared_urls(), &prefix).await;
    let spaces: Vec<String> = (0..30).map(|i| format!("space{i}")).collect();
    let spaces: Vec<&str> = spaces.iter().map(String::as_str).collect();
    hv.create(&spaces).await;

    // The same shards, another number of virtual nodes: another ring.
    let mut config = RedisConfig::new(shared_urls());
    config.prefix = prefix;
    config.vnodes = 7;
    let wrong = RedisRegistry::new(config).expect("config");
    let report = repair::check(&wrong, TTL).await.expect("check");
    assert!(
        report.count(Problem::MisplacedKey) > 0,
        "{}",
        report.to_text()
    );
    let options = RepairOptions {
        star_ttl: TTL,
        delete_orphans: true,
    };
    let outcome = repair::repair(&wrong, options).await.expect("repair");
    let refused = outcome.refused.clone().unwrap_or_default();
    assert!(refused.contains("rebalance"), "{}", outcome.to_text());
    assert!(outcome.passes.is_empty());
    // Nothing was changed: with the right ring, all is as it was.
    let right = hv.check().await;
    assert!(right.is_clean(), "{}", right.to_text());
    assert_eq!(right.records, 30);
}

// --- The binary. ---

fn write_config(dir: &Path, shards: &[String], prefix: &str) -> PathBuf {
    let path = dir.join("registry.toml");
    let text = format!("shards = \"{}\"\nprefix = \"{prefix}\"\n", shards.join(","));
    std::fs::write(&path, text).expect("config written");
    path
}

/// `registry-svc ARGS --config CONFIG`, with no `HV_REGISTRY_*` from our environment.
fn run(config: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_registry-svc"));
    for (name, _) in std::env::vars() {
        if name.starts_with("HV_REGISTRY_") {
            cmd.env_remove(name);
        }
    }
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("registry-svc runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_1_on_findings_and_0_after_repair() {
    let prefix = unique_prefix();
    let hv = Hv::new(shared_urls(), &prefix).await;
    hv.create(&["gamma", "gamma:g1", "gamma:g2", "gamma:g3"])
        .await;
    let _: () = hv.raw("gamma:g2", redis::cmd("DEL").arg(hv.rec("gamma:g2")));
    let _: () = hv.raw(
        "gamma:g3",
        redis::cmd("HSET")
            .arg(hv.rec("gamma:g3"))
            .arg("st")
            .arg("LOCAL::ghost"),
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let config = write_config(dir.path(), &shared_urls(), &prefix);

    let check = run(&config, &["check"]);
    let text = stdout(&check);
    assert_eq!(check.status.code(), Some(1), "{text}{}", stderr(&check));
    assert!(text.starts_with("check: 3 shards"), "{text}");
    assert!(text.contains("3 records: 2 findings"), "{text}");
    assert!(text.contains("index entries without a record: 1"), "{text}");
    assert!(text.contains("gamma:g2 in the index of gamma"), "{text}");
    assert!(text.contains("gamma:g3 on star LOCAL::ghost"), "{text}");

    let json = run(&config, &["check", "--json"]);
    assert_eq!(json.status.code(), Some(1));
    let parsed: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    assert_eq!(parsed["findings"]["orphan_entry"]["count"], 1, "{parsed}");
    assert_eq!(
        parsed["findings"]["dangling_star"]["examples"][0]["subject"],
        "gamma:g3"
    );

    let fixed = run(&config, &["repair"]);
    let text = stdout(&fixed);
    assert_eq!(fixed.status.code(), Some(0), "{text}{}", stderr(&fixed));
    assert!(
        text.contains("index entries without a record: 1, 1 fixed"),
        "{text}"
    );
    assert!(text.contains("after repair: 3 shards"), "{text}");
    assert!(text.trim_end().ends_with("clean"), "{text}");

    let check = run(&config, &["check"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    assert!(
        stdout(&check).contains("3 records: clean"),
        "{}",
        stdout(&check)
    );
}

#[test]
fn the_binary_exits_2_when_it_cannot_check() {
    let dir = tempfile::tempdir().expect("temp dir");

    // No shards: the in-memory backend has nothing to check.
    let config = dir.path().join("memory.toml");
    std::fs::write(&config, "prefix = \"hv\"\n").expect("config");
    let out = run(&config, &["check"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("work on Redis shards"),
        "{}",
        stderr(&out)
    );

    // A shard nobody listens on, with a password that must not be shown.
    let dead = format!("redis://:s3cret-pw@127.0.0.1:{}/", free_port());
    let config = write_config(dir.path(), &[dead], "hv");
    for args in [&["check"][..], &["repair", "--json"]] {
        let out = run(&config, args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("redis://:***@127.0.0.1:"),
            "names the shard: {err}"
        );
        assert!(!err.contains("s3cret-pw"), "the password shows: {err}");
        assert!(stdout(&out).is_empty(), "no report: {}", stdout(&out));
    }

    // A config file that is not there.
    let out = run(&dir.path().join("missing.toml"), &["repair"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
}

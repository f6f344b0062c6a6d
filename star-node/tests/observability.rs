//! The files in `deploy/`: the alert rules pass `promtool` and their unit tests; a real
//! Prometheus scraping a real cluster loads the rules healthy and answers every query
//! of the Grafana dashboard with data; the systemd units pass `systemd-analyze
//! verify`; the compose file and the Kubernetes manifests hold together, and the
//! settings they give each service pass its `--check-config`.
//!
//! The compose file is read by `compose_spec`, a parser of the Compose specification;
//! the manifests are checked by `kubernetes-validate` (PyPI) against the Kubernetes
//! API's schemas.
//!
//! Needs `promtool` and `prometheus` (Debian's `prometheus` package), `systemd-analyze`,
//! `python3` with PyYAML (`python3-yaml`, to read YAML as JSON for the structural
//! checks) and `kubernetes-validate` (`HV_KUBERNETES_VALIDATE`, or on PATH);
//! scripts/test.sh installs them. Each test fails loudly when one is missing.

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// `deploy/PATH`.
fn deploy(path: &str) -> PathBuf {
    root().join("deploy").join(path)
}

/// Runs `command`, panicking with a hint when the program is missing.
fn run(command: &mut Command, hint: &str) -> Output {
    command
        .output()
        .unwrap_or_else(|e| panic!("{command:?} did not run ({e}): {hint}"))
}

/// Panics with both streams unless `out` succeeded.
fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

const PROMTOOL: &str = "promtool is missing: apt-get install prometheus (scripts/test.sh does)";

/// The names of the alerts in `deploy/prometheus/alerts.yml`.
fn alert_names() -> Vec<String> {
    let rules = std::fs::read_to_string(deploy("prometheus/alerts.yml")).expect("alerts.yml");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn alert_rules_pass_promtool_and_their_unit_tests() {
    let dir = deploy("prometheus");
    let out = run(
        Command::new("promtool")
            .args(["check", "rules", "alerts.yml"])
            .current_dir(&dir),
        PROMTOOL,
    );
    assert_ok(&out, "promtool check rules alerts.yml");
    let out = run(
        Command::new("promtool")
            .args(["test", "rules", "alerts_test.yml"])
            .current_dir(&dir),
        PROMTOOL,
    );
    assert_ok(&out, "promtool test rules alerts_test.yml");
    // Every alert has a unit test.
    let tests = std::fs::read_to_string(dir.join("alerts_test.yml")).expect("alerts_test.yml");
    for name in alert_names() {
        assert!(
            tests.contains(&format!("alertname: {name}\n")),
            "{name} has no unit test in alerts_test.yml"
        );
    }
    // The example config (with its rule file) is valid.
    let out = run(
        Command::new("promtool")
            .args(["check", "config", "prometheus.yml"])
            .current_dir(&dir),
        PROMTOOL,
    );
    assert_ok(&out, "promtool check config prometheus.yml");
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Every panel's target expressions in the dashboard (rows' nested panels included),
/// with the panel's title.
fn dashboard_targets(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_string();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"].as_str().expect("a target with an expr");
                out.push((title.clone(), expr.to_string()));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

/// Grafana's variables replaced as Grafana would for "All" and a 1m interval.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1m")
        .replace("${instance}", ".*")
        .replace("$instance", ".*")
}

/// Opens a TCP connection to `addr`, sends `bytes` and reads until it is closed.
fn send_garbage(addr: SocketAddr, bytes: &[u8]) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let _ = stream.write_all(bytes);
    let mut sink = Vec::new();
    let _ = stream.read_to_end(&mut sink);
}

#[test]
fn prometheus_loads_the_rules_and_answers_every_dashboard_query() {
    let started = Instant::now();
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(deploy("grafana/hyperverse.json")).expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    // The data source is a template variable, used by every panel.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    assert!(
        variables.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "a ${{datasource}} variable of Prometheus data sources"
    );
    let targets = dashboard_targets(&dashboard);
    assert!(targets.len() >= 30, "{} targets", targets.len());
    for panel in dashboard["panels"].as_array().expect("panels") {
        if panel["type"] != "row" {
            assert_eq!(
                panel["datasource"]["uid"], "${datasource}",
                "{}",
                panel["title"]
            );
        }
    }

    let cluster = Cluster::start(3000);
    let (gate_a, gate_b) = (cluster.gate_a(), cluster.gate_b());

    // Prometheus scraping both machines and registry-svc every second, with the rules.
    let dir = tempfile::tempdir().expect("a temp dir");
    let port = registry::free_port();
    let prometheus_addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - '{}'\n\
             scrape_configs:\n\
             \x20 - job_name: registry-svc\n    static_configs:\n      - targets: ['{}']\n\
             \x20 - job_name: star-node\n    static_configs:\n      - targets: ['{}', '{}']\n",
            deploy("prometheus/alerts.yml").display(),
            cluster.registry.addr("metrics"),
            cluster.a.addr("metrics"),
            cluster.b.addr("metrics"),
        ),
    )
    .expect("config written");
    let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("a log file");
    let mut command = Command::new("/usr/bin/prometheus");
    command
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={prometheus_addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    assert!(
        Path::new("/usr/bin/prometheus").exists(),
        "/usr/bin/prometheus is missing: apt-get install prometheus (scripts/test.sh does)"
    );
    let _prometheus = Process::spawn(command);
    let prometheus_log =
        || std::fs::read_to_string(dir.path().join("prometheus.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !matches!(probe(prometheus_addr, "/-/ready"), Some((200, _))) {
        assert!(
            Instant::now() < deadline,
            "Prometheus not ready within 20 s:\n{}",
            prometheus_log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Traffic, so that every series the dashboard shows exists and moves.
    let space = cluster.space("obs");
    let mut bases = Vec::new();
    for i in 0..6 {
        let point = format!("{space}:b{i}");
        hv_ok(gate_a, &["create", &point, "Base"]);
        bases.push(point);
    }
    // A mechtron, on machine b, counted through both gates: wasm invocations, fuel and
    // an instance.
    let wasm = publish(gate_a, &space, "counter");
    let counter = mechtron(gate_a, &format!("{space}:counter"), &wasm, "<<b>>::scribe");
    let counter = counter.to_string();
    // A refused access (anonymous), a wrong token, garbage at a gate and at the registry.
    let _ = hv(gate_a, None, &["create", &format!("{space}:nope"), "Base"]);
    let _ = hv(gate_b, Some("not the admin token"), &["stars"]);
    send_garbage(
        gate_a,
        b"GET / HTTP/1.0\r\n\r\nthis is no hyperverse client\n",
    );
    send_garbage(
        cluster.registry.addr("rpc"),
        b"GET / HTTP/1.0\r\n\r\nthis is no star-node\n",
    );
    let drive = || {
        for point in &bases {
            hv_ok(gate_a, &["ping", point]);
            hv_ok(gate_b, &["ping", point]);
        }
        hv_ok(gate_a, &["ping", &counter, "--method", "Ext<Count>"]);
        hv_ok(gate_b, &["ping", &counter, "--method", "Ext<Count>"]);
    };
    drive();
    // (The dashboard only needs the series; hv_wasm_instances is counted by every
    // star's driver of a machine together, tested in drivers/tests/mechtron.rs.)
    eventually(
        Duration::from_secs(10),
        "a denial, a failed login, wasm calls",
        || {
            let metrics = cluster.scrape_both();
            metric(&metrics, "hv_access_denied_total", &[]) > 0.0
                && metric(
                    &metrics,
                    "hv_gate_login_failures_total",
                    &[("reason", "bad_token")],
                ) > 0.0
                && metric(&metrics, "hv_wasm_invocations_total", &[]) > 0.0
        },
    );

    // Every rule loaded and evaluated without error.
    let names = alert_names();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = probe(prometheus_addr, "/api/v1/rules").expect("Prometheus answers");
        let rules: Value = serde_json::from_str(&body).expect("JSON");
        let mut healthy = BTreeSet::new();
        let mut unhealthy = Vec::new();
        for group in rules["data"]["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                let name = rule["name"].as_str().unwrap_or("?").to_string();
                match rule["health"].as_str() {
                    Some("ok") => {
                        healthy.insert(name);
                    }
                    other => unhealthy.push(format!("{name}: {other:?} {}", rule["lastError"])),
                }
            }
        }
        let missing: Vec<_> = names.iter().filter(|n| !healthy.contains(*n)).collect();
        if missing.is_empty() {
            assert_eq!(
                healthy.len(),
                names.len(),
                "the rules of alerts.yml, once each"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rules not healthy within 20 s: missing {missing:?}, unhealthy {unhealthy:?}\n{body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Every dashboard query has data (rates need two scrapes: poll, driving traffic).
    let mut pending: BTreeMap<String, String> = targets
        .iter()
        .map(|(title, expr)| (substitute(expr), title.clone()))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pending.retain(|expr, _| {
            let path = format!("/api/v1/query?query={}", encode(expr));
            let Some((status, body)) = probe(prometheus_addr, &path) else {
                return true;
            };
            assert_eq!(status, 200, "{expr}: {body}");
            let answer: Value = serde_json::from_str(&body).expect("JSON");
            assert_eq!(answer["status"], "success", "{expr}: {body}");
            answer["data"]["result"]
                .as_array()
                .is_none_or(|r| r.is_empty())
        });
        if pending.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dashboard queries without data after 30 s: {pending:#?}"
        );
        drive();
        std::thread::sleep(Duration::from_millis(500));
    }
    eprintln!(
        "{} dashboard queries answered, {} rules healthy, in {:?}",
        targets.len(),
        names.len(),
        started.elapsed()
    );
}

/// A YAML file's documents, as JSON (read by python3's PyYAML: no YAML crate is in
/// the workspace).
fn yaml(path: &Path) -> Vec<Value> {
    let out = run(
        Command::new("/usr/bin/python3").arg("-c").arg(
            "import json, sys, yaml\n\
             json.dump([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None], sys.stdout)",
        )
        .arg(path),
        "python3 with PyYAML is missing: apt-get install python3-yaml (scripts/test.sh does)",
    );
    assert_ok(&out, &format!("reading {} as YAML", path.display()));
    serde_json::from_slice(&out.stdout).expect("JSON from python3")
}

/// `30s`, `1m`, `20` (seconds) as seconds.
fn seconds(text: &str) -> u64 {
    let text = text.trim();
    if let Some(m) = text.strip_suffix('m') {
        m.parse::<u64>().expect("minutes") * 60
    } else {
        text.trim_end_matches('s').parse().expect("seconds")
    }
}

/// `binary --check-config` with exactly `env` (and PATH): its output.
fn check_config(binary: &Path, env: &BTreeMap<String, String>) -> Output {
    let mut command = Command::new(binary);
    command.arg("--check-config").env_clear();
    if let Ok(path) = std::env::var("PATH") {
        command.env("PATH", path);
    }
    command.envs(env);
    run(&mut command, "the binary runs")
}

/// The drain a star-node gives waves in flight at SIGTERM (`drain_timeout_ms`'s default).
const DRAIN_SECONDS: u64 = 5;

#[test]
fn systemd_units_verify() {
    // `systemd-analyze verify` needs no running systemd (it also works in a container
    // whose PID 1 is not systemd), but it checks that the binaries exist: the units are
    // verified with ExecStart pointing at the binaries cargo built.
    let star_node = PathBuf::from(env!("CARGO_BIN_EXE_star-node"));
    let registry_svc = registry_svc_bin();
    let dir = tempfile::tempdir().expect("a temp dir");
    let mut units = Vec::new();
    for (unit, binary) in [
        ("star-node.service", &star_node),
        ("registry-svc.service", &registry_svc),
    ] {
        let text = std::fs::read_to_string(deploy(&format!("systemd/{unit}"))).expect("the unit");
        let name = unit.trim_end_matches(".service");
        let bin = format!("/usr/local/bin/{name}");
        let mut keys: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && l.contains('='))
        {
            let (key, value) = line.split_once('=').expect("key=value");
            keys.entry(key).or_default().push(value);
        }
        let one = |key: &str| -> &str {
            let values = keys.get(key).unwrap_or_else(|| panic!("{unit}: no {key}="));
            assert_eq!(values.len(), 1, "{unit}: one {key}=");
            values[0]
        };
        assert_eq!(
            one("ExecStartPre"),
            format!("{bin} --config /etc/hyperverse/{}.toml --check-config", {
                if name == "star-node" {
                    "star-node"
                } else {
                    "registry"
                }
            }),
            "{unit}: the config is checked before the start"
        );
        assert!(one("ExecStart").starts_with(&bin), "{unit}");
        assert!(
            one("EnvironmentFile").starts_with("/etc/hyperverse/"),
            "{unit}"
        );
        assert_eq!(one("Restart"), "on-failure", "{unit}");
        assert_eq!(one("User"), "hyperverse", "{unit}: not root");
        assert!(
            seconds(one("TimeoutStopSec")) > 2 * DRAIN_SECONDS,
            "{unit}: TimeoutStopSec well over the drain"
        );
        assert!(
            !text
                .lines()
                .any(|l| !l.starts_with('#') && l.contains("SECRET")),
            "{unit}: no secret in the unit (the EnvironmentFile has it)"
        );
        if name == "star-node" {
            assert_eq!(
                one("Environment"),
                "HV_STAR_ADMIN_TOKEN_FILE=/etc/hyperverse/admin-token",
                "{unit}: the admin token from a file"
            );
        }
        let path = dir.path().join(unit);
        std::fs::write(&path, text.replace(&bin, &binary.display().to_string()))
            .expect("unit written");
        units.push(path);
    }
    let out = run(
        Command::new("systemd-analyze").arg("verify").args(&units),
        "systemd-analyze is missing: apt-get install systemd (scripts/test.sh does)",
    );
    assert_ok(&out, "systemd-analyze verify");
    // It reports unknown keys and bad values as warnings, with success: none allowed.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.trim().is_empty(),
        "systemd-analyze verify warns:\n{stderr}"
    );
}

#[test]
fn compose_file_holds_together() {
    // The Compose specification, as a parser that implements it reads it: unknown keys,
    // values of the wrong shape, and services naming undefined volumes, secrets or
    // networks are errors.
    let text = std::fs::read_to_string(deploy("compose/compose.yaml")).expect("compose.yaml");
    let spec = compose_spec::Compose::options()
        .apply_merge(true) // `<<: *star-node`, as docker compose merges it
        .from_yaml_str(&text)
        .unwrap_or_else(|e| panic!("compose.yaml breaks the Compose specification: {e}"));
    spec.validate_all()
        .unwrap_or_else(|e| panic!("compose.yaml breaks the Compose specification: {e}"));
    let compose = yaml(&deploy("compose/compose.yaml"));
    let compose = &compose[0];
    let services = compose["services"].as_object().expect("services");
    for name in ["redis", "registry-svc", "star-a", "star-b", "prometheus"] {
        assert!(services.contains_key(name), "no service {name}");
    }
    // Redis persists with AOF, fsync every second.
    let redis = services["redis"]["command"].to_string();
    assert!(
        redis.contains(r#""--appendonly","yes""#)
            && redis.contains(r#""--appendfsync","everysec""#),
        "{redis}"
    );
    // Dependencies exist; secrets are declared.
    for (name, service) in services {
        for dependency in service["depends_on"].as_object().into_iter().flatten() {
            assert!(
                services.contains_key(dependency.0),
                "{name} depends on {}",
                dependency.0
            );
        }
        for secret in service["secrets"].as_array().into_iter().flatten() {
            let secret = secret.as_str().expect("a secret name");
            assert!(
                compose["secrets"][secret]["file"].is_string(),
                "{name}: secret {secret}"
            );
        }
    }
    // Prometheus gets the alert rules and a config that passes promtool with them.
    let volumes = services["prometheus"]["volumes"].to_string();
    assert!(
        volumes.contains("../prometheus/alerts.yml:/etc/prometheus/alerts.yml"),
        "{volumes}"
    );
    assert!(deploy("prometheus/alerts.yml").exists());
    let dir = tempfile::tempdir().expect("a temp dir");
    std::fs::copy(
        deploy("compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .expect("copy");
    std::fs::copy(
        deploy("prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .expect("copy");
    let out = run(
        Command::new("promtool")
            .args(["check", "config", "prometheus.yml"])
            .current_dir(dir.path()),
        PROMTOOL,
    );
    assert_ok(&out, "promtool check config deploy/compose/prometheus.yml");

    // Each hyperverse service: its settings pass --check-config, its healthcheck asks
    // /readyz on its metrics port, and a star-node gets longer than the drain to stop.
    let token = dir.path().join("admin-token");
    std::fs::write(&token, "the admin token of the compose test\n").expect("token");
    for (name, binary, prefix) in [
        ("registry-svc", registry_svc_bin(), "HV_REGISTRY_"),
        (
            "star-a",
            PathBuf::from(env!("CARGO_BIN_EXE_star-node")),
            "HV_STAR_",
        ),
        (
            "star-b",
            PathBuf::from(env!("CARGO_BIN_EXE_star-node")),
            "HV_STAR_",
        ),
    ] {
        let service = &services[name];
        let mut env: BTreeMap<String, String> = service["environment"]
            .as_object()
            .unwrap_or_else(|| panic!("{name}: an environment map"))
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("a string").to_string()))
            .collect();
        // The entrypoint sets the secret from /run/secrets/hv_secret.
        let entrypoint = service["entrypoint"].to_string();
        assert!(
            entrypoint.contains(&format!("{prefix}SECRET="))
                && entrypoint.contains("/run/secrets/hv_secret"),
            "{name}: {entrypoint}"
        );
        env.insert(
            format!("{prefix}SECRET"),
            "the compose test's secret".into(),
        );
        if let Some(file) = env.get_mut("HV_STAR_ADMIN_TOKEN_FILE") {
            assert_eq!(file, "/run/secrets/admin_token", "{name}");
            *file = token.display().to_string();
        }
        let out = check_config(&binary, &env);
        assert_ok(&out, &format!("{name}: --check-config with {env:?}"));
        let metrics_port = env[&format!("{prefix}METRICS")]
            .rsplit(':')
            .next()
            .expect("a port")
            .to_string();
        let health = service["healthcheck"]["test"].to_string();
        assert!(
            health.contains(&format!(":{metrics_port}/readyz")),
            "{name}: healthcheck {health}"
        );
        if prefix == "HV_STAR_" {
            let grace = service["stop_grace_period"]
                .as_str()
                .expect("stop_grace_period");
            assert!(seconds(grace) > 2 * DRAIN_SECONDS, "{name}: {grace}");
            assert_ne!(env["HV_STAR_ADVERTISE"], "", "{name}: advertise");
        }
    }
}

#[test]
fn kubernetes_manifests_hold_together() {
    let dir = deploy("kubernetes");
    let mut objects = Vec::new();
    let mut files = vec![dir.join("secret.example.yaml")];
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    for resource in kustomization[0]["resources"].as_array().expect("resources") {
        let file = dir.join(resource.as_str().expect("a file"));
        objects.extend(yaml(&file));
        files.push(file);
    }
    // Every object against the Kubernetes API's own schemas, unknown fields refused,
    // for the oldest and newest versions we claim.
    let validator =
        std::env::var_os("HV_KUBERNETES_VALIDATE").unwrap_or_else(|| "kubernetes-validate".into());
    for version in ["1.29.0", "1.37.0"] {
        let out = run(
            Command::new(&validator)
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .args(&files),
            "kubernetes-validate (PyPI) is missing: scripts/test.sh installs it in a \
             virtualenv and sets HV_KUBERNETES_VALIDATE",
        );
        assert_ok(
            &out,
            &format!("kubernetes-validate for Kubernetes {version}"),
        );
    }
    let secret = yaml(&dir.join("secret.example.yaml"));
    assert_eq!(secret[0]["kind"], "Secret");
    let secret_keys: BTreeSet<String> = secret[0]["stringData"]
        .as_object()
        .expect("stringData")
        .keys()
        .cloned()
        .collect();
    for object in &objects {
        assert!(
            object["apiVersion"].is_string() && object["kind"].is_string(),
            "{object}"
        );
        assert!(object["metadata"]["name"].is_string(), "{object}");
    }
    let find = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    let workloads: Vec<&Value> = objects
        .iter()
        .filter(|o| o["kind"] == "Deployment" || o["kind"] == "StatefulSet")
        .collect();
    // Every Service selects a workload's pods, and its named target ports exist there.
    for service in objects.iter().filter(|o| o["kind"] == "Service") {
        let selector = service["spec"]["selector"].as_object().expect("a selector");
        let workload = workloads
            .iter()
            .find(|w| {
                let labels = &w["spec"]["template"]["metadata"]["labels"];
                selector.iter().all(|(k, v)| &labels[k] == v)
            })
            .unwrap_or_else(|| panic!("service {} selects no pods", service["metadata"]["name"]));
        let ports = workload["spec"]["template"]["spec"]["containers"][0]["ports"].to_string();
        for port in service["spec"]["ports"].as_array().expect("ports") {
            if let Some(name) = port["targetPort"].as_str() {
                assert!(
                    ports.contains(&format!("\"name\":\"{name}\"")),
                    "{name} in {ports}"
                );
            }
        }
    }
    for workload in &workloads {
        let labels = &workload["spec"]["template"]["metadata"]["labels"];
        for (k, v) in workload["spec"]["selector"]["matchLabels"]
            .as_object()
            .expect("matchLabels")
        {
            assert_eq!(&labels[k], v, "{}: selector", workload["metadata"]["name"]);
        }
        if let Some(service) = workload["spec"]["serviceName"].as_str() {
            assert!(
                find("Service", service)["spec"]["clusterIP"] == "None",
                "{service}: headless"
            );
        }
    }

    // star-node: a StatefulSet whose machine is the pod's name and which advertises
    // its pod IP; registry-svc: a Deployment. Both probe /livez and /readyz on their
    // metrics port, leave more than the drain to stop, and pass --check-config with
    // the settings given (downward-API values and Secrets filled in as Kubernetes
    // would).
    let token = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(token.path(), "the admin token of the kubernetes test\n").expect("token");
    for (kind, name, binary, prefix) in [
        (
            "StatefulSet",
            "star-node",
            PathBuf::from(env!("CARGO_BIN_EXE_star-node")),
            "HV_STAR_",
        ),
        (
            "Deployment",
            "registry-svc",
            registry_svc_bin(),
            "HV_REGISTRY_",
        ),
    ] {
        let workload = find(kind, name);
        let pod = &workload["spec"]["template"]["spec"];
        let grace = pod["terminationGracePeriodSeconds"]
            .as_u64()
            .expect("a grace period");
        assert!(
            grace > 2 * DRAIN_SECONDS,
            "{name}: terminationGracePeriodSeconds {grace}"
        );
        let container = &pod["containers"][0];
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        let mut downward: BTreeMap<String, String> = BTreeMap::new();
        for var in container["env"].as_array().expect("env") {
            let key = var["name"].as_str().expect("a name").to_string();
            let value = if let Some(value) = var["value"].as_str() {
                // $(VAR) refers to an earlier variable, as Kubernetes expands it.
                let mut value = value.to_string();
                for (k, v) in env.iter().chain(downward.iter()) {
                    value = value.replace(&format!("$({k})"), v);
                }
                assert!(
                    !value.contains("$("),
                    "{name}: {key}={value} refers to nothing"
                );
                value
            } else if let Some(path) = var["valueFrom"]["fieldRef"]["fieldPath"].as_str() {
                let value = match path {
                    "metadata.name" => format!("{name}-0"),
                    "status.podIP" => "10.1.2.3".to_string(),
                    other => panic!("{name}: fieldRef {other}"),
                };
                downward.insert(key.clone(), value);
                continue;
            } else {
                let secret = &var["valueFrom"]["secretKeyRef"];
                assert_eq!(secret["name"], "hyperverse", "{name}: {key}");
                let k = secret["key"].as_str().expect("a key");
                assert!(
                    secret_keys.contains(k),
                    "{name}: {key} from a missing key {k}"
                );
                format!("the kubernetes test's {k}")
            };
            env.insert(key, value);
        }
        if prefix == "HV_STAR_" {
            assert_eq!(
                env["HV_STAR_MACHINE"], "star-node-0",
                "the machine is the pod"
            );
            assert_eq!(
                env["HV_STAR_ADVERTISE"], "10.1.2.3:7700",
                "the pod IP is advertised"
            );
            // The admin token is the Secret's key mounted as a file.
            let file = env["HV_STAR_ADMIN_TOKEN_FILE"].clone();
            let mount = container["volumeMounts"]
                .as_array()
                .expect("volumeMounts")
                .iter()
                .find(|m| file.starts_with(m["mountPath"].as_str().unwrap_or("-")))
                .unwrap_or_else(|| panic!("{file} is not mounted"));
            let volume = pod["volumes"]
                .as_array()
                .expect("volumes")
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("the mounted volume");
            assert_eq!(volume["secret"]["secretName"], "hyperverse");
            let item = &volume["secret"]["items"][0];
            assert!(secret_keys.contains(item["key"].as_str().expect("a key")));
            assert_eq!(
                format!(
                    "{}/{}",
                    mount["mountPath"].as_str().unwrap(),
                    item["path"].as_str().unwrap()
                ),
                file
            );
            env.insert(
                "HV_STAR_ADMIN_TOKEN_FILE".into(),
                token.path().display().to_string(),
            );
        }
        assert!(
            !env.contains_key(&format!("{prefix}ADMIN_TOKEN")),
            "{name}: no admin token in the environment"
        );
        let out = check_config(&binary, &env);
        assert_ok(&out, &format!("{name}: --check-config with {env:?}"));
        let metrics_port: u64 = env[&format!("{prefix}METRICS")]
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("a metrics port");
        let ports = container["ports"].as_array().expect("ports");
        let metrics = ports
            .iter()
            .find(|p| p["name"] == "metrics")
            .expect("a metrics port");
        assert_eq!(metrics["containerPort"], metrics_port, "{name}");
        for (probe, path) in [("livenessProbe", "/livez"), ("readinessProbe", "/readyz")] {
            let probe = &container[probe]["httpGet"];
            assert_eq!(probe["path"], path, "{name}");
            assert_eq!(probe["port"], "metrics", "{name}");
        }
    }
    let star_nodes = find("StatefulSet", "star-node");
    assert_eq!(
        find(
            "Service",
            star_nodes["spec"]["serviceName"]
                .as_str()
                .expect("serviceName")
        )["spec"]["clusterIP"],
        "None"
    );
    // Redis persists with AOF.
    let redis = find("StatefulSet", "redis")["spec"]["template"]["spec"]["containers"][0]["args"]
        .to_string();
    assert!(
        redis.contains(r#""--appendonly","yes""#) && redis.contains("everysec"),
        "{redis}"
    );
}

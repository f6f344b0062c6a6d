//! Traces across machines: two real star-nodes export their spans over OTLP/HTTP (JSON)
//! to a receiver inside this test, and one cross-machine ping, sent with a client's
//! `traceparent`, comes back as one trace whose spans, from both machines, form one
//! tree: gate → star (a) → lane (a) → star (b) → driver (b); a mechtron's signal
//! continues the trace of the wave that made it send it.

mod support;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use support::*;

/// The client's trace and span, as `hv ping --header traceparent=…` sends them.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// A trace the client marks as not sampled: no machine makes a span for it.
const UNSAMPLED: &str = "0af7651916cd43dd8448eb211c80319c";
/// The trace of a ping to a mechtron that signals another.
const CHAT: &str = "5d1b7c1b2b6a4c8e9f0a1b2c3d4e5f60";

/// One exported span, flattened with its resource's `service.instance.id`.
#[derive(Debug, Clone)]
struct Span {
    machine: String,
    trace: String,
    id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// An OTLP/HTTP receiver: answers every POST with 200 and keeps the JSON bodies.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the receiver");
        let addr = listener.local_addr().expect("its address");
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Receiver { addr, bodies }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        let bodies = self.bodies.lock().expect("bodies");
        bodies.iter().flat_map(spans_of).collect()
    }
}

/// Reads HTTP/1.1 requests off one connection (the exporter keeps it alive) until it
/// closes.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Value>>) {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("a read timeout");
    let mut writer = stream.try_clone().expect("a second handle");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("a length");
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let json = serde_json::from_slice(&body).expect("the exporter sends JSON");
        kept.lock().expect("bodies").push(json);
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// The spans of one OTLP `ExportTraceServiceRequest` in JSON.
fn spans_of(body: &Value) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource in body["resourceSpans"].as_array().into_iter().flatten() {
        let resource_attributes = attributes(&resource["resource"]["attributes"]);
        let machine = resource_attributes
            .get("service.instance.id")
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            resource_attributes.get("service.name").map(String::as_str),
            Some("star-node")
        );
        for scope in resource["scopeSpans"].as_array().into_iter().flatten() {
            for span in scope["spans"].as_array().into_iter().flatten() {
                let text = |key: &str| span[key].as_str().unwrap_or_default().to_string();
                spans.push(Span {
                    machine: machine.clone(),
                    trace: text("traceId"),
                    id: text("spanId"),
                    parent: text("parentSpanId"),
                    name: text("name"),
                    attributes: attributes(&span["attributes"]),
                });
            }
        }
    }
    spans
}

/// OTLP key-values as text (strings as they are, other values as JSON).
fn attributes(list: &Value) -> HashMap<String, String> {
    let mut map = HashMap::new();
    for kv in list.as_array().into_iter().flatten() {
        let key = kv["key"].as_str().unwrap_or_default().to_string();
        let value = match &kv["value"] {
            Value::Object(o) => match o.values().next() {
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
                None => String::new(),
            },
            other => other.to_string(),
        };
        map.insert(key, value);
    }
    map
}

/// The one span of `trace` named `name` on `machine`.
fn one<'a>(spans: &'a [Span], machine: &str, name: &str) -> &'a Span {
    let found: Vec<&Span> = spans
        .iter()
        .filter(|s| s.machine == machine && s.name == name)
        .collect();
    assert_eq!(found.len(), 1, "one {name} on {machine} in {spans:#?}");
    found[0]
}

#[test]
fn one_cross_machine_ping_is_one_trace_with_spans_from_both_machines() {
    let receiver = Receiver::start();
    let shard = RedisServer::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry_svc(dir.path(), &[shard.url()], 3000);
    let rpc = registry.addr("rpc");
    let tracing = format!(
        "otlp_endpoint = \"http://{}\"\notlp_protocol = \"http/json\"\n",
        receiver.addr
    );
    let node = |machine: &str| {
        let mut command = star_node_command_with(dir.path(), machine, rpc, SECRET, &tracing);
        // Export every 100 ms rather than every 5 s.
        command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
        Process::start(command, "star-node ready")
    };
    let (a, b) = (node("a"), node("b"));
    let (gate_a, gate_b) = (a.addr("gate"), b.addr("gate"));
    for gate in [gate_a, gate_b] {
        eventually(Duration::from_secs(10), "8 live stars", || {
            hv_ok(gate, &["stars"]).lines().count() == 8
        });
    }
    hv_ok(gate_a, &["create", "localhost", "Space"]);
    let echo = mechtron(
        gate_a,
        "localhost:echo",
        &publish(gate_a, "localhost", "echo"),
        "<<b>>::super",
    );

    let echo = echo.to_string();
    let ping = |trace: &str, flags: &str| {
        let traceparent = format!("traceparent=00-{trace}-{CLIENT_SPAN}-{flags}");
        let args = ["ping", &echo, "--body", "traced", "--header", &traceparent];
        assert_eq!(hv_ok(gate_a, &args).trim(), "traced");
    };
    // First the unsampled ping: its spans, were there any, would be queued before the
    // sampled one's on both machines, so exported no later.
    ping(UNSAMPLED, "00");
    ping(TRACE, "01");

    let wanted = [
        ("a", "gate"),
        ("a", "star"),
        ("a", "lane"),
        ("b", "star"),
        ("b", "driver"),
    ];
    let complete = |trace: &[Span]| {
        wanted
            .iter()
            .all(|(m, n)| trace.iter().any(|s| s.machine == *m && s.name == *n))
    };
    let trace = poll(Duration::from_secs(20), || {
        let trace: Vec<Span> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace == TRACE)
            .collect();
        match complete(&trace) {
            true => Ok(trace),
            false => Err(format!(
                "not all of {wanted:?} exported: {trace:#?}\nall spans: {:?}",
                receiver.spans()
            )),
        }
    });

    let unsampled: Vec<Span> = receiver
        .spans()
        .into_iter()
        .filter(|s| s.trace == UNSAMPLED)
        .collect();
    assert!(
        unsampled.is_empty(),
        "a trace not sampled made spans: {unsampled:#?}"
    );

    // One tree: the gate's span continues the client's, every other span's parent is
    // in the trace, and the hops chain across the lane.
    let gate = one(&trace, "a", "gate");
    assert_eq!(
        gate.parent, CLIENT_SPAN,
        "the gate joins the client's trace"
    );
    assert_eq!(
        gate.attributes.get("method").map(String::as_str),
        Some("Cmd<Bounce>")
    );
    let ids: HashSet<&str> = trace.iter().map(|s| s.id.as_str()).collect();
    for span in &trace {
        assert!(
            span.id == gate.id || ids.contains(span.parent.as_str()),
            "{span:?} hangs outside the trace {trace:#?}"
        );
    }
    let star_a = one(&trace, "a", "star");
    let lane = one(&trace, "a", "lane");
    let star_b = one(&trace, "b", "star");
    let driver = one(&trace, "b", "driver");
    assert_eq!(star_a.parent, gate.id);
    assert_eq!(lane.parent, star_a.id, "{trace:#?}");
    assert_eq!(star_b.parent, lane.id, "b's star continues a's lane");
    assert_eq!(driver.parent, star_b.id);
    assert_eq!(
        driver.attributes.get("kind").map(String::as_str),
        Some("Mechtron")
    );
    for hop in [gate, star_a, lane, star_b] {
        assert_eq!(
            hop.attributes.get("status").map(String::as_str),
            Some("200"),
            "{hop:?}"
        );
    }

    // A client request other than a ping: its registry calls are its children.
    let spans = receiver.spans();
    let create = spans
        .iter()
        .find(|s| s.name == "gate" && s.attributes.get("op").map(String::as_str) == Some("create"))
        .expect("the create's span");
    let calls: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "registry" && s.parent == create.id)
        .collect();
    assert!(
        !calls.is_empty(),
        "registry calls under {create:?} in {spans:#?}"
    );
    assert!(
        calls
            .iter()
            .all(|c| c.trace == create.trace && c.attributes.contains_key("op"))
    );

    // A mechtron's signal continues the trace of the wave it handled: chatty (on b)
    // signals the echo as itself; the signal's star span is the driver call's child,
    // and the access check it needs asks the registry within the same trace.
    let chatty = "localhost:chatty";
    let config = format!("config={echo}");
    let wasm = publish(gate_a, "localhost", "chatty");
    hv_ok(
        gate_a,
        &[
            "create", chatty, "Mechtron", "--set", &wasm, "--set", &config,
        ],
    );
    hv_ok(gate_a, &["migrate", chatty, "<<b>>::super"]);
    let traceparent = format!("traceparent=00-{CHAT}-{CLIENT_SPAN}-01");
    let args = [
        "ping",
        chatty,
        "--method",
        "Ext<Chat>",
        "--header",
        &traceparent,
    ];
    assert_eq!(hv_ok(gate_a, &args).trim(), "sent");
    let call = poll(Duration::from_secs(20), || {
        let chat: Vec<Span> = receiver
            .spans()
            .into_iter()
            .filter(|s| s.trace == CHAT)
            .collect();
        let driver = chat.iter().find(|s| s.machine == "b" && s.name == "driver");
        let signal = driver.and_then(|d| {
            chat.iter()
                .find(|s| s.machine == "b" && s.name == "star" && s.parent == d.id)
        });
        let registry_call = signal.and_then(|signal| {
            let access = chat
                .iter()
                .find(|s| s.name == "access" && s.parent == signal.id)?;
            chat.iter()
                .find(|s| s.name == "registry" && s.parent == access.id)
        });
        registry_call.cloned().ok_or_else(|| {
            format!("no signal → access → registry chain under the driver span in {chat:#?}")
        })
    });
    assert_eq!(
        call.attributes.get("op").map(String::as_str),
        Some("access")
    );
    drop((a, b, registry));
}

/// Spans still queued at SIGTERM are sent before the process exits: with an export
/// every minute, the spans of a `create` reach the collector only through the flush.
#[test]
fn the_last_spans_are_sent_at_sigterm() {
    let receiver = Receiver::start();
    let shard = RedisServer::start();
    let dir = tempfile::tempdir().expect("a temp dir");
    let registry = registry_svc(dir.path(), &[shard.url()], 3000);
    let tracing = format!(
        "otlp_endpoint = \"http://{}\"\notlp_protocol = \"http/json\"\n",
        receiver.addr
    );
    let mut command =
        star_node_command_with(dir.path(), "a", registry.addr("rpc"), SECRET, &tracing);
    command.env("OTEL_BSP_SCHEDULE_DELAY", "60000");
    let mut node = Process::start(command, "star-node ready");
    hv_ok(node.addr("gate"), &["create", "localhost", "Space"]);
    assert!(
        receiver.spans().is_empty(),
        "nothing exported before a minute"
    );

    node.signal("TERM");
    assert!(node.wait_exit(Duration::from_secs(20)).success());
    let spans = receiver.spans();
    assert!(
        spans
            .iter()
            .any(|s| s.name == "gate"
                && s.attributes.get("op").map(String::as_str) == Some("create")),
        "the create's span flushed at exit: {spans:#?}"
    );
    drop(registry);
}

//! Redis shards for the local cluster: `redis-server`s on free loopback ports.
//!
//! A probed port can be taken by someone else before the server binds it; then the
//! server we reach is not ours (its `dbfilename` says so) or ours exits, and we try
//! another port. Nothing is persisted (`--save ''`, no AOF).

use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::{Processes, Role, Spec, on_path};

/// Ports tried per shard.
pub(super) const ATTEMPTS: usize = 5;
/// How long a shard has to answer.
pub(super) const SHARD_WAIT: Duration = Duration::from_secs(10);

/// Starts `count` servers; returns their URLs.
pub async fn start_shards(
    count: usize,
    dir: &Path,
    processes: &mut Processes,
) -> Result<Vec<String>> {
    let program = on_path("redis-server")
        .ok_or_else(|| Error::Missing("redis-server is not on PATH".into()))?;
    let mut urls = Vec::new();
    for shard in 0..count {
        let mut last = String::new();
        let mut started = None;
        for attempt in 0..ATTEMPTS {
            let port = free_port()?;
            let identity = format!("hvlt-{}-{shard}-{attempt}.rdb", std::process::id());
            let index = processes.spawn(Spec {
                name: format!("redis-{shard}"),
                role: Role::Redis,
                program: program.clone(),
                args: [
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--dbfilename",
                    &identity,
                    "--dir",
                    &dir.to_string_lossy(),
                    "--daemonize",
                    "no",
                    "--loglevel",
                    "warning",
                    "--logfile",
                    &dir.join(format!("redis-{shard}.log")).to_string_lossy(),
                ]
                .iter()
                .map(Into::into)
                .collect(),
                env: Vec::new(),
                log: dir.join(format!("redis-{shard}.err")),
            })?;
            processes.ready(index, None, SHARD_WAIT).await?;
            let url = format!("redis://127.0.0.1:{port}/");
            let alive = || processes.is_running(index);
            match answers_as(&url, &identity, &alive).await {
                Ok(()) => {
                    started = Some(url);
                    break;
                }
                Err(why) => {
                    last = why;
                    processes.discard(index);
                }
            }
        }
        let url = started.ok_or_else(|| {
            Error::Start(format!(
                "redis-server did not start on any of {ATTEMPTS} free ports: {last}"
            ))
        })?;
        urls.push(url);
    }
    Ok(urls)
}

/// Waits until the server at `url` answers with our `dbfilename`.
async fn answers_as(url: &str, identity: &str, alive: &dyn Fn() -> bool) -> Result<(), String> {
    let client = redis::Client::open(url).map_err(|e| format!("{url}: {e}"))?;
    let deadline = Instant::now() + SHARD_WAIT;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        if !alive() {
            return Err(format!("redis-server on {url} exited (port taken?)"));
        }
        let attempt = tokio::time::timeout(Duration::from_secs(1), async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("dbfilename")
                .query_async::<(String, String)>(&mut conn)
                .await
        })
        .await;
        match attempt {
            Ok(Ok((_, name))) if name == identity => return Ok(()),
            Ok(Ok((_, name))) => return Err(format!("{url} is someone else's server ({name})")),
            Ok(Err(e)) => last = e.to_string(),
            Err(_) => last = "timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Err(format!("{url}: {last}"))
}

/// A loopback port nobody listens on right now.
pub(super) fn free_port() -> Result<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| Error::Start(format!("no free loopback port: {e}")))
}

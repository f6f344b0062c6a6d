//! One Redis shard as the backend uses it: single commands are batched, pipelines and
//! connection handling go to the shard's [`ShardLink`].
//!
//! Single-point operations arrive one at a time from many concurrent requests. Each is
//! queued to the shard's batcher task, which takes every command waiting (up to
//! [`MAX_BATCH`]) and sends them as one pipeline while the next batch gathers: one write,
//! one read and one round of parsing for many requests. Lua scripts go by `EVALSHA`; a
//! shard that does not know a script (restarted, flushed) gets it loaded and the command
//! is sent again.
//!
//! Writes wait for replicas: when the shard's [`Replication`] asks for `n` acknowledgements,
//! a batch holding a write ends with `WAIT n timeout`, and a round trip of its own that
//! writes is followed by one on the same connection. Redis applies `WAIT` to every write
//! the connection sent before it, so one `WAIT` covers the whole batch. A write whose
//! `WAIT` comes back short answers `Unavailable` ("reached k of n replicas"): it is
//! applied on the primary, but not acknowledged, since a fail-over could lose it. How
//! many `n` is, see [`super::replication`].

use std::sync::{Arc, OnceLock};

use hyperverse_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use tokio::sync::{mpsc, oneshot};

use super::identity::{Identity, ShardState};
pub use super::link::{ShardLink, ShardTimeouts};
use super::replication::{Acks, Replication};
use super::source::ShardSpec;

/// The most commands sent in one pipeline.
pub const MAX_BATCH: usize = 256;

struct Job {
    cmd: Cmd,
    write: bool,
    reply: oneshot::Sender<Result<Value>>,
}

/// A Redis shard.
#[derive(Debug)]
pub struct Shard {
    link: Arc<ShardLink>,
    acks: Arc<Acks>,
    batcher: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Shard {
    /// The shard of `spec`; nothing is connected until the first operation.
    pub fn new(
        spec: &ShardSpec,
        timeouts: ShardTimeouts,
        identity: Arc<Identity>,
        replication: Replication,
    ) -> Result<Self> {
        let acks = Arc::new(Acks::new(replication));
        Ok(Self {
            link: Arc::new(ShardLink::new(spec, timeouts, identity, acks.clone())?),
            acks,
            batcher: OnceLock::new(),
        })
    }

    /// The shard's name (its URL, or its Sentinel master name), passwords hidden.
    pub fn url(&self) -> &str {
        self.link.url()
    }

    /// The shard's name on the ring and in its identity.
    pub fn name(&self) -> &str {
        self.link.name()
    }

    /// Whether the shard is served: reachable at the last contact, identity verified.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
    }

    /// The shard's state as last seen.
    pub fn state(&self) -> ShardState {
        self.link.state()
    }

    /// Verifies the shard's reachability and identity now (the periodic health check),
    /// and counts the replicas its primary has online when writes wait for them, and
    /// whether its Sentinels see it settled.
    pub async fn check(&self) -> ShardState {
        let state = self.link.check().await;
        if state == ShardState::Serving && self.acks.wanted_at_all() {
            let info = self
                .run(|mut c| async move {
                    redis::cmd("INFO")
                        .arg("replication")
                        .query_async::<String>(&mut c)
                        .await
                })
                .await;
            if let Ok(info) = info {
                self.acks.observe(&info);
            }
            self.acks.set_settled(self.link.settled().await);
        }
        state
    }

    /// The replicas online at the last check (`None` before one, or when writes wait
    /// for none).
    pub fn replicas_online(&self) -> Option<usize> {
        self.acks.online()
    }

    /// The link, for the operator's commands that work below identity.
    pub fn link(&self) -> &ShardLink {
        &self.link
    }

    /// Round trips (commands or pipelines) sent to this shard.
    pub fn ops(&self) -> u64 {
        self.link.ops()
    }

    /// Runs one round trip of its own (a pipeline, a multi-key read) on the shard.
    pub async fn run<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        self.link.run(op).await
    }

    /// Runs a round trip of its own that writes, then waits for the replicas to
    /// acknowledge it (see the module doc).
    pub async fn run_write<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let Some(wait) = self.acks.wait() else {
            return self.run(op).await;
        };
        let cmd = &wait.cmd;
        let (value, acked) = self
            .run(|c| async move {
                let mut again = c.clone();
                let value = op(c).await?;
                let acked: Value = cmd.query_async(&mut again).await?;
                Ok((value, acked))
            })
            .await?;
        match wait.shortfall(&self.link, &acked) {
            Some(error) => Err(error),
            None => Ok(value),
        }
    }

    /// Checks that the shard answers (`PING`, on a round trip of its own).
    pub async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// Sends `cmd`, a read, in the shard's next batch and parses its reply.
    pub async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T> {
        self.send(cmd, false).await
    }

    /// Sends `cmd`, a write, in the shard's next batch and parses its reply, once the
    /// replicas acknowledged it.
    pub async fn write<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T> {
        self.send(cmd, true).await
    }

    async fn send<T: FromRedisValue>(&self, cmd: Cmd, write: bool) -> Result<T> {
        let value = self.query_value(cmd, write).await?;
        redis::from_redis_value(value)
            .map_err(|e| Error::internal(format!("shard {}: unexpected reply: {e}", self.url())))
    }

    /// Runs `script` with `keys` and `args` by `EVALSHA` in the next batch, loading the
    /// script first if the shard does not know it. Every script may write: it is
    /// acknowledged like [`Shard::write`].
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        keys: &[&str],
        args: impl Fn(&mut Cmd),
    ) -> Result<T> {
        let build = || {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
            args(&mut cmd);
            cmd
        };
        match self.write(build()).await {
            Err(Error::Internal(msg)) if msg.to_ascii_lowercase().contains("noscript") => {
                self.run(|mut c| async move { script.load_async(&mut c).await })
                    .await?;
                self.write(build()).await
            }
            other => other,
        }
    }

    async fn query_value(&self, cmd: Cmd, write: bool) -> Result<Value> {
        let batcher = self.batcher.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_loop(self.link.clone(), self.acks.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        batcher
            .send(Job { cmd, write, reply })
            .map_err(|_| Error::internal(format!("shard {}: batcher stopped", self.url())))?;
        answer.await.map_err(|_| {
            Error::internal(format!("shard {}: batcher dropped a command", self.url()))
        })?
    }
}

/// Gathers waiting commands into pipelines until the shard (and its sender) is dropped.
async fn batch_loop(link: Arc<ShardLink>, acks: Arc<Acks>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for job in &mut batch {
            pipe.add_command(std::mem::replace(&mut job.cmd, Cmd::new()));
        }
        let wait = acks.wait().filter(|_| batch.iter().any(|job| job.write));
        let expected = batch.len() + usize::from(wait.is_some());
        if let Some(wait) = &wait {
            pipe.add_command(wait.cmd.clone());
        }
        let replies: Result<Vec<Value>> = link
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await;
        match replies {
            Ok(mut values) if values.len() == expected => {
                // The WAIT's answer, if one was sent: whether the writes are acknowledged.
                let short = match &wait {
                    Some(wait) => values.pop().and_then(|acked| wait.shortfall(&link, &acked)),
                    None => None,
                };
                for (job, value) in batch.drain(..).zip(values) {
                    let result = match (value, &short) {
                        (Value::ServerError(e), _) => Err(link.server_error(RedisError::from(e))),
                        (_, Some(error)) if job.write => Err(error.clone()),
                        (value, _) => Ok(value),
                    };
                    let _ = job.reply.send(result);
                }
            }
            Ok(values) => {
                let error = Error::internal(format!(
                    "shard {}: {} replies to {} commands",
                    link.url(),
                    values.len(),
                    expected
                ));
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
            Err(error) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(error.clone()));
                }
            }
        }
    }
}

//! One Redis shard as the backend uses it: single commands are batched, pipelines and
//! connection handling go to the shard's [`ShardLink`].
//!
//! Single-point operations arrive one at a time from many concurrent requests. Each is
//! queued to the shard's batcher task, which takes every command waiting (up to
//! [`MAX_BATCH`]) and sends them as one pipeline while the next batch gathers: one write,
//! one read and one round of parsing for many requests. Lua scripts go by `EVALSHA`; a
//! shard that does not know a script (restarted, flushed) gets it loaded and the command
//! is sent again.

use std::sync::{Arc, OnceLock};

use hyperverse_core::{Error, Result};
use redis::aio::MultiplexedConnection;
use redis::{Cmd, FromRedisValue, RedisError, Script, Value};
use tokio::sync::{mpsc, oneshot};

pub use super::link::{ShardLink, ShardTimeouts};

/// The most commands sent in one pipeline.
pub const MAX_BATCH: usize = 256;

struct Job {
    cmd: Cmd,
    reply: oneshot::Sender<Result<Value>>,
}

/// A Redis shard.
#[derive(Debug)]
pub struct Shard {
    link: Arc<ShardLink>,
    batcher: OnceLock<mpsc::UnboundedSender<Job>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Shard {
    /// A shard at `url`; nothing is connected until the first operation.
    pub fn new(url: &str, timeouts: ShardTimeouts) -> Result<Self> {
        Ok(Self {
            link: Arc::new(ShardLink::new(url, timeouts)?),
            batcher: OnceLock::new(),
        })
    }

    /// The shard's URL, as configured.
    pub fn url(&self) -> &str {
        self.link.url()
    }

    /// Whether the last contact with the shard succeeded.
    pub fn is_up(&self) -> bool {
        self.link.is_up()
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

    /// Checks that the shard answers (`PING`, on a round trip of its own).
    pub async fn ping(&self) -> Result<()> {
        self.run(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(drop)
    }

    /// Sends `cmd` in the shard's next batch and parses its reply.
    pub async fn query<T: FromRedisValue>(&self, cmd: Cmd) -> Result<T> {
        let value = self.query_value(cmd).await?;
        redis::from_redis_value(value)
            .map_err(|e| Error::internal(format!("shard {}: unexpected reply: {e}", self.url())))
    }

    /// Runs `script` with `keys` and `args` by `EVALSHA` in the next batch, loading the
    /// script first if the shard does not know it.
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
        match self.query(build()).await {
            Err(Error::Internal(msg)) if msg.to_ascii_lowercase().contains("noscript") => {
                self.run(|mut c| async move { script.load_async(&mut c).await })
                    .await?;
                self.query(build()).await
            }
            other => other,
        }
    }

    async fn query_value(&self, cmd: Cmd) -> Result<Value> {
        let batcher = self.batcher.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(batch_loop(self.link.clone(), rx));
            tx
        });
        let (reply, answer) = oneshot::channel();
        batcher
            .send(Job { cmd, reply })
            .map_err(|_| Error::internal(format!("shard {}: batcher stopped", self.url())))?;
        answer.await.map_err(|_| {
            Error::internal(format!("shard {}: batcher dropped a command", self.url()))
        })?
    }
}

/// Gathers waiting commands into pipelines until the shard (and its sender) is dropped.
async fn batch_loop(link: Arc<ShardLink>, mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for job in &mut batch {
            pipe.add_command(std::mem::replace(&mut job.cmd, Cmd::new()));
        }
        let replies: Result<Vec<Value>> = link
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await;
        match replies {
            Ok(values) if values.len() == batch.len() => {
                for (job, value) in batch.drain(..).zip(values) {
                    let result = match value {
                        Value::ServerError(e) => Err(link.server_error(RedisError::from(e))),
                        value => Ok(value),
                    };
                    let _ = job.reply.send(result);
                }
            }
            Ok(values) => {
                let error = Error::internal(format!(
                    "shard {}: {} replies to {} commands",
                    link.url(),
                    values.len(),
                    batch.len()
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

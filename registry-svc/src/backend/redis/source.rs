//! Where a shard's Redis is: a fixed URL, or whichever server a set of Redis Sentinels
//! names as the current primary of a monitored master.
//!
//! A shard has a name, its position on the ring and the name in its identity: the URL
//! itself for a URL shard (so rings configured before names existed place points where
//! they always did), the master name for a Sentinel shard. A Sentinel shard is resolved
//! afresh on every connect, so a reconnect after a fail-over reaches the new primary.
//!
//! The Sentinels are also asked whether they see the master settled ([`Source::settled`]):
//! up, and no fail-over under way. A primary that restarts while a fail-over is under way
//! is still named by the Sentinels, answers as a primary with no replica, and is turned
//! into a replica when the fail-over ends, dropping what it took meanwhile: writes are
//! not acknowledged without a replica until the Sentinels see the master settled.

use std::collections::HashMap;
use std::time::Duration;

use hyperverse_core::{Error, Result};
use redis::Client;
use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelServerType};
use tokio::sync::Mutex;

use super::link::redacted;

/// One shard as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardSpec {
    /// The shard's name on the ring and in its identity.
    pub name: String,
    /// Where its Redis is.
    pub source: ShardSource,
}

/// Where a shard's Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardSource {
    /// A Redis server at this URL (`redis://host:port/db`).
    Url(String),
    /// The current primary of `master`, as the Sentinels at these addresses
    /// (`host:port`) name it.
    Sentinel {
        /// The Sentinels' addresses.
        sentinels: Vec<String>,
        /// The master name they monitor.
        master: String,
    },
}

impl ShardSpec {
    /// A shard at a fixed URL, named by it.
    pub fn url(url: impl Into<String>) -> Self {
        let url = url.into();
        Self {
            name: url.clone(),
            source: ShardSource::Url(url),
        }
    }

    /// A Sentinel-monitored shard, named by its master name.
    pub fn sentinel(master: impl Into<String>, sentinels: &[String]) -> Self {
        let master = master.into();
        Self {
            name: master.clone(),
            source: ShardSource::Sentinel {
                sentinels: sentinels.to_vec(),
                master,
            },
        }
    }

    /// The name with any password shown as `***`, for logs, errors and metric labels.
    pub fn shown_name(&self) -> String {
        redacted(&self.name)
    }

    /// Whether replicas are expected behind this shard (it is Sentinel-monitored).
    pub fn is_replicated(&self) -> bool {
        matches!(self.source, ShardSource::Sentinel { .. })
    }
}

/// How a shard link finds its server.
pub(crate) enum Source {
    Direct(Client),
    Sentinel {
        /// Finds the primary the Sentinels name.
        client: Mutex<SentinelClient>,
        /// Each Sentinel, asked directly whether the master is settled.
        sentinels: Vec<SentinelLink>,
        /// The master name they monitor.
        master: String,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Direct(_) => "Direct",
            Source::Sentinel { .. } => "Sentinel",
        })
    }
}

/// The `SENTINEL MASTER` flags that mean the master is not settled: a Sentinel has no
/// answer from it (`s_down`), enough agree (`o_down`), or a fail-over is under way.
/// Not `disconnected`: every Sentinel shows it for most of a second after it switched
/// to a new primary, while it links to it (measured), and it says nothing of a
/// fail-over to come.
const UNSETTLED_FLAGS: [&str; 3] = ["s_down", "o_down", "failover_in_progress"];

/// One Sentinel, asked `SENTINEL MASTER` every shard check on a connection kept
/// between checks (dropped when a question fails, made anew at the next).
pub(crate) struct SentinelLink {
    client: Client,
    conn: Mutex<Option<MultiplexedConnection>>,
}

impl SentinelLink {
    fn new(client: Client) -> Self {
        Self {
            client,
            conn: Mutex::new(None),
        }
    }

    /// `SENTINEL MASTER master`'s fields, or `None` when the Sentinel does not answer
    /// within `limit`.
    async fn master(&self, master: &str, limit: Duration) -> Option<HashMap<String, String>> {
        let mut kept = self.conn.lock().await;
        let asked = async {
            let mut conn = match kept.as_ref() {
                Some(conn) => conn.clone(),
                None => self.client.get_multiplexed_async_connection().await?,
            };
            let fields = redis::cmd("SENTINEL")
                .arg("MASTER")
                .arg(master)
                .query_async::<HashMap<String, String>>(&mut conn)
                .await?;
            Ok::<_, redis::RedisError>((conn, fields))
        };
        match tokio::time::timeout(limit, asked).await {
            Ok(Ok((conn, fields))) => {
                *kept = Some(conn);
                Some(fields)
            }
            _ => {
                *kept = None;
                None
            }
        }
    }
}

/// Whether a `SENTINEL MASTER` `flags` value (`master,s_down,o_down`) says settled.
fn settled_flags(flags: &str) -> bool {
    !flags.split(',').any(|flag| UNSETTLED_FLAGS.contains(&flag))
}

impl Source {
    /// The source of `spec`; fails on an unparsable URL or Sentinel address, naming it.
    pub(crate) fn new(spec: &ShardSpec) -> Result<Self> {
        match &spec.source {
            ShardSource::Url(url) => Client::open(url.as_str()).map(Source::Direct).map_err(|e| {
                Error::bad_request(format!("shard URL {:?} is not valid: {e}", redacted(url)))
            }),
            ShardSource::Sentinel { sentinels, master } => {
                if sentinels.is_empty() {
                    return Err(Error::bad_request(format!(
                        "shard {master:?} is Sentinel-monitored but no Sentinel is configured"
                    )));
                }
                let invalid = |e: redis::RedisError| {
                    Error::bad_request(format!(
                        "Sentinels {sentinels:?} for shard {master:?} are not valid: {e}"
                    ))
                };
                let urls: Vec<String> = sentinels
                    .iter()
                    .map(|addr| format!("redis://{addr}/"))
                    .collect();
                let direct = urls
                    .iter()
                    .map(|url| Client::open(url.as_str()).map(SentinelLink::new))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(invalid)?;
                let client =
                    SentinelClient::build(urls, master.clone(), None, SentinelServerType::Master)
                        .map_err(invalid)?;
                Ok(Source::Sentinel {
                    client: Mutex::new(client),
                    sentinels: direct,
                    master: master.clone(),
                })
            }
        }
    }

    /// The address of the primary the Sentinels name now; `None` for a URL shard (whose
    /// server never changes) or when no Sentinel answers.
    pub(crate) async fn sentinel_primary(&self) -> Option<String> {
        match self {
            Source::Direct(_) => None,
            Source::Sentinel { client, .. } => client
                .lock()
                .await
                .async_get_client()
                .await
                .ok()
                .map(|client| client.get_connection_info().addr().to_string()),
        }
    }

    /// A client for the server to use now: the fixed one, or the primary the Sentinels
    /// name right now (checked to be a primary).
    pub(crate) async fn client(&self) -> Result<Client, redis::RedisError> {
        match self {
            Source::Direct(client) => Ok(client.clone()),
            Source::Sentinel { client, .. } => client.lock().await.async_get_client().await,
        }
    }

    /// Whether writes to the primary at `primary` (`host:port`) may be acknowledged by
    /// fewer replicas than asked for: always for a URL shard; for a Sentinel shard, only
    /// while every Sentinel that answers within `limit` and names that primary sees it
    /// settled, and at least one does. A Sentinel naming another primary has not heard
    /// of the last fail-over yet: its flags are about a server no longer used.
    pub(crate) async fn settled(&self, primary: &str, limit: Duration) -> bool {
        let Source::Sentinel {
            sentinels, master, ..
        } = self
        else {
            return true;
        };
        let asks = sentinels.iter().map(|sentinel| async move {
            let fields = sentinel.master(master, limit).await?;
            let field = |name: &str| fields.get(name).map_or("", String::as_str);
            let named = format!("{}:{}", field("ip"), field("port"));
            (named == primary).then(|| settled_flags(field("flags")))
        });
        let answers: Vec<bool> = futures::future::join_all(asks)
            .await
            .into_iter()
            .flatten()
            .collect();
        !answers.is_empty() && answers.iter().all(|&settled| settled)
    }
}

#[cfg(test)]
mod tests {
    use super::settled_flags;

    #[test]
    fn a_master_down_or_failing_over_is_not_settled() {
        assert!(settled_flags("master"));
        assert!(settled_flags("master,disconnected"));
        assert!(!settled_flags("master,s_down"));
        assert!(!settled_flags("master,s_down,o_down"));
        assert!(!settled_flags("master,failover_in_progress"));
        assert!(!settled_flags("master,promoted,failover_in_progress"));
    }
}

//! Where a shard's Redis is: a fixed URL, or whichever server a set of Redis Sentinels
//! names as the current primary of a monitored master.
//!
//! A shard has a name, its position on the ring and the name in its identity: the URL
//! itself for a URL shard (so rings configured before names existed place points where
//! they always did), the master name for a Sentinel shard. A Sentinel shard is resolved
//! afresh on every connect, so a reconnect after a fail-over reaches the new primary.

use hyperverse_core::{Error, Result};
use redis::Client;
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
    Sentinel(Mutex<SentinelClient>),
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Source::Direct(_) => "Direct",
            Source::Sentinel(_) => "Sentinel",
        })
    }
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
                let urls: Vec<String> = sentinels
                    .iter()
                    .map(|addr| format!("redis://{addr}/"))
                    .collect();
                SentinelClient::build(urls, master.clone(), None, SentinelServerType::Master)
                    .map(|client| Source::Sentinel(Mutex::new(client)))
                    .map_err(|e| {
                        Error::bad_request(format!(
                            "Sentinels {sentinels:?} for shard {master:?} are not valid: {e}"
                        ))
                    })
            }
        }
    }

    /// The address of the primary the Sentinels name now; `None` for a URL shard (whose
    /// server never changes) or when no Sentinel answers.
    pub(crate) async fn sentinel_primary(&self) -> Option<String> {
        match self {
            Source::Direct(_) => None,
            Source::Sentinel(sentinel) => sentinel
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
            Source::Sentinel(sentinel) => sentinel.lock().await.async_get_client().await,
        }
    }
}

//! The raw Redis baseline: unpipelined `GET` of one key with the `redis` crate (the
//! client library registry-svc uses), one request in flight per connection, as many
//! connections as requests in flight, spread over the shards — as
//! `registry-svc/benches/registry.rs` measures it.

use std::sync::Arc;
use std::time::Duration;

/// The key read.
const KEY: &str = "loadtest:baseline";

/// GETs per second with `connections` connections over `urls`, for `duration`.
pub async fn measure(
    urls: &[String],
    connections: usize,
    duration: Duration,
) -> Result<f64, String> {
    let mut conns = Vec::new();
    for i in 0..connections.max(1) {
        let url = &urls[i % urls.len()];
        let client = redis::Client::open(url.as_str()).map_err(|e| format!("{url}: {e}"))?;
        let mut conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|e| format!("connecting to {url}: {e}"))?;
        if i < urls.len() {
            redis::cmd("SET")
                .arg(KEY)
                .arg("x")
                .query_async::<()>(&mut conn)
                .await
                .map_err(|e| format!("SET on {url}: {e}"))?;
        }
        conns.push(conn);
    }
    let conns = Arc::new(conns);
    super::closed_loop(connections, duration, move |worker| {
        let mut conn = conns[worker % conns.len()].clone();
        async move {
            redis::cmd("GET")
                .arg(KEY)
                .query_async::<Option<String>>(&mut conn)
                .await
                .map_err(|e| format!("GET: {e}"))
                .map(|_| ())
        }
    })
    .await
}

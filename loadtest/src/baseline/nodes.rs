//! The processes of the raw TCP baselines: `loadtest echo-node` and `loadtest
//! relay-node`, started by the harness as child processes of its own executable, so
//! they are separate processes like star-nodes.
//!
//! ```text
//! tcp echo:  client ──▶ echo-node ──▶ client
//! tcp relay: client ──▶ relay-node ──one connection (a "lane")──▶ echo-node
//!            client ◀── relay-node ◀─────────────────────────────── echo-node
//! ```
//!
//! Each runs on one thread (a current-thread runtime, as a star-node's actix system
//! does), decodes every frame and encodes every answer with the same codec, and writes
//! like star-node: a writer task per connection that `feed`s every queued frame and
//! flushes once the queue is empty. The relay pairs answers with their clients by id,
//! as a lane pairs pongs with pings — and does nothing else.

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::sync::CancellationToken;

use super::raw::{Pad, RawCodec, RawFrame, pad_for, write_frames};
use crate::cli::{EchoNodeArgs, RelayNodeArgs};

/// Frames queued on the relay's lane before it waits (star-node's `lane_backlog`).
const LANE_BACKLOG: usize = 65_536;
/// How long the relay tries to reach its echo node.
const DIAL_WAIT: Duration = Duration::from_secs(10);

/// `loadtest echo-node`: answers every frame with one of the size it asks for.
pub fn echo_main(args: EchoNodeArgs) -> ExitCode {
    serve_main("echo-node", async move {
        let listener = bind(&args.listen).await?;
        announce("echo-node", &listener)?;
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|e| format!("accept: {e}"))?;
            tokio::spawn(echo_connection(stream));
        }
    })
}

async fn echo_connection(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, RawCodec::default());
    let writer = FramedWrite::new(write, RawCodec::default());
    let (answers, queued) = mpsc::unbounded_channel();
    let closed = CancellationToken::new();
    let writing = tokio::spawn(write_frames(writer, queued, closed.clone()));
    while let Some(Ok(frame)) = reader.next().await {
        let answer = RawFrame {
            id: frame.id,
            reply: 0,
            pad: Pad::zeros(frame.reply as usize),
        };
        if answers.send(answer).is_err() {
            break;
        }
    }
    drop(answers);
    let _ = writing.await;
}

/// Who waits for an answer the relay forwarded: the client's queue and its id.
type Waiting = (mpsc::UnboundedSender<RawFrame>, u64, u32);

/// The relay's state: its lane to the echo node and the calls in flight on it.
struct Relay {
    lane: mpsc::Sender<RawFrame>,
    pending: Mutex<HashMap<u64, Waiting>>,
    next_id: AtomicU64,
    forward_pad: usize,
    forward_reply: u32,
}

impl Relay {
    fn pending(&self) -> MutexGuard<'_, HashMap<u64, Waiting>> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `loadtest relay-node`: forwards every client frame to the echo node over one
/// connection, re-sized like a lane ping, and passes each answer back re-sized like
/// the gate's answer.
pub fn relay_main(args: RelayNodeArgs) -> ExitCode {
    serve_main("relay-node", async move {
        let echo = dial(&args.to).await?;
        let (read, write) = echo.into_split();
        let forward_reply = u32::try_from(pad_for(args.forward_reply_bytes, 0))
            .map_err(|_| "--forward-reply-bytes is too large".to_string())?;
        let forward_pad = pad_for(args.forward_bytes, forward_reply);
        let (lane, queued) = mpsc::channel(LANE_BACKLOG);
        let closed = CancellationToken::new();
        tokio::spawn(write_frames(
            FramedWrite::new(write, RawCodec::default()),
            queued,
            closed.clone(),
        ));
        let relay = Arc::new(Relay {
            lane,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1 << 32),
            forward_pad,
            forward_reply,
        });
        tokio::spawn(lane_answers(
            FramedRead::new(read, RawCodec::default()),
            relay.clone(),
        ));
        let listener = bind(&args.listen).await?;
        announce("relay-node", &listener)?;
        loop {
            let (stream, _) = listener
                .accept()
                .await
                .map_err(|e| format!("accept: {e}"))?;
            tokio::spawn(relay_connection(stream, relay.clone()));
        }
    })
}

/// Passes the echo node's answers back to the clients waiting for them.
async fn lane_answers(
    mut reader: FramedRead<tokio::net::tcp::OwnedReadHalf, RawCodec>,
    relay: Arc<Relay>,
) {
    while let Some(Ok(frame)) = reader.next().await {
        let waiting = relay.pending().remove(&frame.id);
        if let Some((client, id, reply)) = waiting {
            let _ = client.send(RawFrame {
                id,
                reply: 0,
                pad: Pad::zeros(reply as usize),
            });
        }
    }
    // The lane is gone: the relay is useless; let the harness see it.
    eprintln!("relay-node: the connection to the echo node closed");
    std::process::exit(1);
}

async fn relay_connection(stream: TcpStream, relay: Arc<Relay>) {
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, RawCodec::default());
    let (answers, queued) = mpsc::unbounded_channel();
    let closed = CancellationToken::new();
    let writing = tokio::spawn(write_frames(
        FramedWrite::new(write, RawCodec::default()),
        queued,
        closed.clone(),
    ));
    while let Some(Ok(frame)) = reader.next().await {
        let id = relay.next_id.fetch_add(1, Ordering::Relaxed);
        relay
            .pending()
            .insert(id, (answers.clone(), frame.id, frame.reply));
        let forward = RawFrame {
            id,
            reply: relay.forward_reply,
            pad: Pad::zeros(relay.forward_pad),
        };
        if relay.lane.send(forward).await.is_err() {
            break;
        }
    }
    drop(answers);
    let _ = writing.await;
}

/// Runs `serve` on a current-thread runtime; prints its error and fails if it ends.
fn serve_main(name: &str, serve: impl Future<Output = Result<(), String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("{name}: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name}: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn bind(addr: &str) -> Result<TcpListener, String> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr}: {e}"))
}

/// Prints the ready line the harness waits for.
fn announce(name: &str, listener: &TcpListener) -> Result<(), String> {
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("{name} ready addr={addr}");
    use std::io::Write;
    std::io::stdout().flush().map_err(|e| e.to_string())
}

/// Dials the echo node, retrying for a while.
async fn dial(addr: &str) -> Result<TcpStream, String> {
    let deadline = tokio::time::Instant::now() + DIAL_WAIT;
    loop {
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(format!("cannot reach the echo node {addr}: {e}"));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

//! The raw actix baseline: `addr.send(msg).await` to an actor on the same thread, one
//! after the other, in an actix system of its own thread. What one mailbox round trip
//! costs when no thread has to be woken.

use std::time::{Duration, Instant};

use actix::prelude::*;

/// The actor: answers every [`Bounce`] with its number.
struct Echo;

impl Actor for Echo {
    type Context = Context<Self>;
}

/// The message.
#[derive(Message)]
#[rtype(result = "u64")]
struct Bounce(u64);

impl Handler<Bounce> for Echo {
    type Result = u64;

    fn handle(&mut self, msg: Bounce, _: &mut Context<Self>) -> u64 {
        msg.0
    }
}

/// Round trips per second over `duration`.
pub fn measure(duration: Duration) -> Result<f64, String> {
    let thread = std::thread::Builder::new()
        .name("actix-baseline".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let addr = Echo.start();
                let start = Instant::now();
                let mut done: u64 = 0;
                while start.elapsed() < duration {
                    for _ in 0..1024 {
                        let answer = addr
                            .send(Bounce(done))
                            .await
                            .map_err(|e| format!("actix send: {e}"))?;
                        if answer != done {
                            return Err(format!("sent {done}, got {answer}"));
                        }
                        done += 1;
                    }
                }
                Ok(done as f64 / start.elapsed().as_secs_f64())
            })
        })
        .map_err(|e| format!("cannot start the actix thread: {e}"))?;
    thread
        .join()
        .map_err(|_| "the actix baseline panicked".to_string())?
}

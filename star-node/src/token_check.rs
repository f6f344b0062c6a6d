//! User tokens checked off the event loop.
//!
//! An argon2id check ([`drivers::user::verify_token`]) takes tens of milliseconds of
//! CPU and 19 MiB of memory. The gate runs on the machine's one actix thread, with every
//! star, so a check runs on a blocking thread instead — and at most [`concurrent`] of
//! them at once in the process: a flood of logins waits for a place (within the
//! handshake timeout, as every login does) rather than taking every blocking thread
//! and the memory of hundreds of hashes. The login limiter (`crate::logins`) decides
//! beforehand which tokens are checked at all.
//!
//! What a token is worth is `drivers::user`'s business; what the gate makes of it,
//! [`crate::gate`]'s.

use std::sync::LazyLock;

use drivers::user::TokenCheck;
use hyperverse_core::Error;
use hyperverse_core::particle::ParticleRecord;
use tokio::sync::Semaphore;

/// Places for checks running at once, shared by every machine of the process.
static PLACES: LazyLock<Semaphore> = LazyLock::new(|| Semaphore::new(concurrent()));

/// How many checks may run at once: one per CPU, at most 4.
pub fn concurrent() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// What `token` is worth against the User in `record`, checked on a blocking thread
/// once a place is free. Fails only if the check itself panicked.
pub async fn verify(record: ParticleRecord, token: String) -> Result<TokenCheck, Error> {
    let place = PLACES
        .acquire()
        .await
        .map_err(|_| Error::internal("the token checks were closed"))?;
    // The place goes with the check: a login given up on (its handshake timed out)
    // still holds it until its check has finished.
    tokio::task::spawn_blocking(move || {
        let _place = place;
        drivers::user::verify_token(&record, &token)
    })
    .await
    .map_err(|e| Error::internal(format!("checking a token: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use hyperverse_core::Kind;
    use hyperverse_core::particle::{
        Details, ParticleLocation, Properties, Property, Status, Stub,
    };

    use super::*;

    fn user(hash: String) -> ParticleRecord {
        let mut properties = Properties::new();
        let value = Property {
            value: hash,
            locked: false,
        };
        properties.insert(drivers::user::TOKEN_HASH.into(), value);
        ParticleRecord {
            details: Details {
                stub: Stub {
                    point: "localhost:alice".parse().unwrap(),
                    kind: Kind::User,
                    status: Status::Ready,
                },
                properties,
            },
            location: ParticleLocation::default(),
            owner: hyperverse_core::Point::hyperuser(),
        }
    }

    /// One test, as the places are the process's: the check leaves the thread that
    /// asked for it free, and waits while every place is taken.
    #[test]
    fn checks_run_off_the_loop_and_wait_for_a_place() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let record = user(drivers::user::token_hash("pw").unwrap());
            // A task spawned on this one-thread runtime runs only when the test's
            // future waits: a check computed in place would finish first.
            let other_task_ran = Arc::new(AtomicBool::new(false));
            let flag = other_task_ran.clone();
            tokio::spawn(async move { flag.store(true, Ordering::SeqCst) });
            let check = verify(record.clone(), "pw".into()).await.unwrap();
            assert_eq!(check, TokenCheck::Valid);
            assert!(
                other_task_ran.load(Ordering::SeqCst),
                "the check held the event loop"
            );

            let all = u32::try_from(concurrent()).unwrap();
            let taken = PLACES.acquire_many(all).await.unwrap();
            let waiting = tokio::spawn(verify(record, "wrong".into()));
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert!(!waiting.is_finished(), "checked without a free place");
            drop(taken);
            let check = waiting.await.unwrap().unwrap();
            assert_eq!(check, TokenCheck::Invalid);
        });
    }
}

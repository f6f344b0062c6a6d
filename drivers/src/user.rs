//! The User driver: a particle that is also an agent. Its login token is stored only as
//! a hash, in its `token-hash` property; [`verify_token`] is how a gate
//! checks a presented token against it. Users answer the basic commands (see
//! [`crate::container`]) and hold no children.

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::particle::ParticleRecord;
use hyperverse_core::registry::content_hash;
use hyperverse_core::security::secrets_equal;
use hyperverse_core::wave::{Ping, Substance};
use hyperverse_core::{BaseKind, Result};

use crate::container::{basic, unsupported};

/// The property that holds a user's token hash.
pub const TOKEN_HASH: &str = "token-hash";

/// The hash stored for `token` (SHA-256, lower-case hex).
pub fn token_hash(token: &str) -> String {
    content_hash(token.as_bytes())
}

/// Whether `token` is the login token of the user in `record` (constant time, see
/// [`secrets_equal`]). A user without a token hash accepts no token.
pub fn verify_token(record: &ParticleRecord, token: &str) -> bool {
    let Some(stored) = record.details.properties.get(TOKEN_HASH) else {
        return false;
    };
    secrets_equal(token_hash(token).as_bytes(), stored.value.as_bytes())
}

/// Serves `User` particles.
#[derive(Debug, Clone, Copy, Default)]
pub struct UserDriver;

#[async_trait]
impl Driver for UserDriver {
    fn kind(&self) -> BaseKind {
        BaseKind::User
    }

    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        match basic(ctx, ping).await {
            Some(answer) => answer,
            None => Err(unsupported(BaseKind::User, ping)),
        }
    }
}

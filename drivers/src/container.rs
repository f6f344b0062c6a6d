//! The driver of the container kinds — Root, Space, Base, UserBase, App, Repo — whose
//! particles hold children and answer the basic commands:
//!
//! | method | answer |
//! |---|---|
//! | `Cmd<Bounce>` | the request's body, unchanged (a ping that proves the particle is live) |
//! | `Cmd<Read>` | the particle's record, from the registry |
//! | anything else | 400: the kind does not answer that method |

use async_trait::async_trait;
use hyperverse_core::driver::{Driver, DriverCtx};
use hyperverse_core::wave::{CmdMethod, Method, Ping, Substance};
use hyperverse_core::{BaseKind, Error, Result};

/// Serves one container kind.
#[derive(Debug, Clone, Copy)]
pub struct ContainerDriver {
    kind: BaseKind,
}

/// The kinds [`ContainerDriver`] serves.
pub const CONTAINER_KINDS: [BaseKind; 6] = [
    BaseKind::Root,
    BaseKind::Space,
    BaseKind::Base,
    BaseKind::UserBase,
    BaseKind::App,
    BaseKind::Repo,
];

impl ContainerDriver {
    /// The driver of `kind`, one of [`CONTAINER_KINDS`].
    ///
    /// # Panics
    /// If `kind` is not a container kind: a composition error, found at start-up.
    pub fn new(kind: BaseKind) -> Self {
        assert!(
            CONTAINER_KINDS.contains(&kind),
            "{kind} is not a container kind"
        );
        Self { kind }
    }
}

/// The answers every built-in driver gives to the basic commands; `None` for others.
pub(crate) async fn basic(ctx: DriverCtx<'_>, ping: &Ping) -> Option<Result<Substance>> {
    match ping.method {
        Method::Cmd(CmdMethod::Bounce) => Some(Ok(ping.body.clone())),
        Method::Cmd(CmdMethod::Read) => {
            Some(ctx.registry.record(&ping.to).await.map(Substance::Record))
        }
        _ => None,
    }
}

pub(crate) fn unsupported(kind: BaseKind, ping: &Ping) -> Error {
    Error::bad_request(format!("a {kind} does not answer {}", ping.method))
}

#[async_trait]
impl Driver for ContainerDriver {
    fn kind(&self) -> BaseKind {
        self.kind
    }

    fn allows_children(&self) -> bool {
        true
    }

    async fn handle(&self, ctx: DriverCtx<'_>, ping: &Ping) -> Result<Substance> {
        match basic(ctx, ping).await {
            Some(answer) => answer,
            None => Err(unsupported(self.kind, ping)),
        }
    }
}

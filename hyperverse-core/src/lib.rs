//! The language of the hyperverse: the model (points, selectors, kinds, particles,
//! waves), security (permissions, grants, the access algorithm), the wire format, the
//! registry API and its RPC client. No runtime lives here: no actors and no servers
//! (but the optional `/metrics` endpoint, feature `metrics-http`); what holds a socket
//! (the registry client, the dialer) is driven by its user's tokio runtime.
//!
//! Layers, bottom-up:
//! - [`point`], [`selector`], [`kind`]: addressing.
//! - [`particle`], [`wave`]: what the registry stores and what particles exchange;
//!   [`budget`]: how many waves a wave may cause.
//! - [`security`]: permissions, grants and the access algorithm.
//! - [`wire`]: frames, the codec and the handshake shared by the registry RPC and lanes.
//! - [`registry`]: the `RegistryApi` every registry backend implements, its typed RPC
//!   protocol and the multiplexing client.
//! - [`driver`]: the `Driver` and `Hyperverse` traits, the points of composition.

pub mod budget;
pub mod driver;
pub mod duration;
pub mod error;
pub mod kind;
#[cfg(feature = "metrics-http")]
pub mod logs;
pub mod memory;
#[cfg(feature = "metrics-http")]
pub mod metrics_http;
pub mod particle;
pub mod point;
pub mod registry;
pub mod security;
pub mod selector;
pub mod trace;
#[cfg(feature = "metrics-http")]
pub mod traces;
pub mod wave;
pub mod wire;

pub use error::{Error, Result};
pub use kind::{BaseKind, Kind, StarSub};
pub use point::{Point, PointSeg, RouteSeg};
pub use selector::Selector;
pub use wave::{Agent, Wave, WaveId};

//! star-node: the Hyperverse runtime and the `hv` client.
//!
//! - [`machine`]: one process — its stars, directory, lanes, access cache, lifecycle.
//! - [`star`]: the Star actor, carrying out routing, access and driver calls.
//! - [`gate`]: the TCP listener for peer lanes and clients; [`lane`]: outbound lanes.
//! - [`ops`]: client requests other than pings (create, get, select, delete, grants).
//! - Plain values without I/O: [`router`], [`location`], [`exchanger`], [`placement`],
//!   [`access_cache`], [`logins`].
//! - [`protocol`]: what the gate speaks; [`client`]: the client side of it.
//! - [`credentials`]: tokens and secrets read from the environment and files;
//!   [`token_check`]: User tokens checked off the event loop.
//! - [`spans`]: the spans a wave leaves on its way when tracing is on.
//! - [`node`]: starting and stopping a whole star-node (the binary's body, and tests').

pub mod access_cache;
pub mod authority;
pub mod client;
pub mod config;
mod counted;
pub mod credentials;
pub mod exchanger;
pub mod gate;
pub mod health;
pub mod hyperverse;
pub mod lane;
pub mod location;
pub mod logins;
pub mod machine;
pub mod metrics;
pub mod node;
pub mod ops;
pub mod placement;
pub mod protocol;
pub mod reply;
pub mod router;
pub mod spans;
pub mod star;
pub mod token_check;

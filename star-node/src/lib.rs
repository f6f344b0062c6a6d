//! star-node: the Hyperverse runtime (Machine, Stars, Lanes, gate, router) and the `hv`
//! client. Not built yet: the binaries say so and exit non-zero. See `docs/architecture.md`
//! for what will live here.
//!
//! Built so far, the routing logic as plain values without I/O (the Star carries it out):
//!
//! - [`location`]: the bounded point → star cache.
//! - [`router`]: what to do with a wave (deliver, forward, look up, provision, bounce).
//! - [`exchanger`]: replies paired with requests by wave id; deadlines for 408.
//! - [`placement`]: which live star hosts a new particle (two choices by load).

pub mod exchanger;
pub mod location;
pub mod placement;
pub mod router;

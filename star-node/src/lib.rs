//! star-node: the Hyperverse runtime (Machine, Stars, Lanes, gate, router) and the `hv`
//! client. Not built yet: the binaries say so and exit non-zero. See `docs/architecture.md`
//! for what will live here.

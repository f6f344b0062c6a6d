//! drivers: the built-in Hyperverse drivers, one per Kind (root, space, base, user,
//! artifact, mechtron) and the example wasm guests. Not built yet; the `Driver` trait
//! they implement will live in `hyperverse-core`.

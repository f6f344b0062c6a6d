//! [`MechtronConfig`]: the limits every mechtron of one driver runs under. It owns the
//! defaults and their validation, nothing else.
//!
//! The fuel budget is part of a mechtron's meaning: a call that fits on one star must fit
//! on every star, or replay would diverge. Give every star of a hyperverse the same
//! config, and never derive it from the build profile or the machine.

use hyperverse_core::{Error, Result};

/// The size of a wasm page.
pub const PAGE: u64 = 64 * 1024;

/// The limits of the mechtrons one [`super::MechtronDriver`] runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MechtronConfig {
    /// Fuel for one guest call (`hv_init` or `hv_handle`, with its `hv_alloc`). One unit
    /// is about one wasm instruction. The default, 50 million, stops the example
    /// `spinner` after 27–36 ms and the tightest loop there is (`loop br 0`, the slowest
    /// burner measured: 450–880 million units/s) after 60–110 ms, on the 2-core
    /// development machine in a release build; bulk `memory.copy` burns 400–490 million
    /// units/s. Unoptimised wasmi (a debug build) is about 150× slower (the spinner takes
    /// 9 s): build star-node with `--release`, or optimise wasmi in the dev profile.
    pub fuel_per_call: u64,
    /// The most linear memory one mechtron may have, in bytes (whole pages count).
    pub max_memory_bytes: u64,
    /// Worker threads that run guest code for this driver. Calls to one mechtron run
    /// one at a time; different mechtrons run in parallel up to this many.
    pub threads: usize,
    /// Waves one mechtron may have waiting (calls, and `Cmd<Read>`s) before the next is
    /// refused: a ping answered `Unavailable` (503) at once, a signal dropped and
    /// counted. The platform's own work (saves, moves, releases) is never refused.
    pub queue: usize,
}

impl Default for MechtronConfig {
    fn default() -> Self {
        Self {
            fuel_per_call: 50_000_000,
            max_memory_bytes: 16 * 1024 * 1024,
            threads: 1,
            queue: 1024,
        }
    }
}

impl MechtronConfig {
    /// Refuses a config no mechtron could run under.
    pub fn check(&self) -> Result<()> {
        if self.fuel_per_call == 0 {
            return Err(Error::bad_request("mechtron fuel_per_call must be above 0"));
        }
        if self.max_memory_bytes < PAGE {
            return Err(Error::bad_request(format!(
                "mechtron max_memory_bytes must be at least one page ({PAGE} bytes)"
            )));
        }
        if self.threads == 0 {
            return Err(Error::bad_request("mechtron threads must be at least 1"));
        }
        if self.queue == 0 {
            return Err(Error::bad_request("mechtron queue must be at least 1"));
        }
        Ok(())
    }

    /// The memory limit rounded down to whole pages.
    pub fn memory_limit(&self) -> u64 {
        self.max_memory_bytes / PAGE * PAGE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_pass_and_nonsense_is_refused() {
        MechtronConfig::default().check().unwrap();
        for bad in [
            MechtronConfig {
                fuel_per_call: 0,
                ..Default::default()
            },
            MechtronConfig {
                max_memory_bytes: 100,
                ..Default::default()
            },
            MechtronConfig {
                threads: 0,
                ..Default::default()
            },
            MechtronConfig {
                queue: 0,
                ..Default::default()
            },
        ] {
            assert!(matches!(bad.check(), Err(Error::BadRequest(_))), "{bad:?}");
        }
        let odd = MechtronConfig {
            max_memory_bytes: PAGE * 3 + 5,
            ..Default::default()
        };
        assert_eq!(odd.memory_limit(), PAGE * 3);
    }
}

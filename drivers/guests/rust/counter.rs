//! counter: answers every wave with its running count as decimal text: 1, 2, …
//! `Ext<Panic>` counts, then panics: the wave traps, and the host rolls the count back.
#![no_std]

extern crate alloc;

use alloc::string::ToString;
use hyperverse_guest::{export, Failure, Particle, Reply, Wave};

struct Counter {
    count: u64,
}

impl Particle for Counter {
    fn init(_config: &[u8]) -> Result<Self, Failure> {
        Ok(Counter { count: 0 })
    }

    fn handle(&mut self, wave: &Wave<'_>) -> Result<Reply, Failure> {
        self.count += 1;
        if wave.ext() == Some("Panic") {
            panic!("asked to panic at count {}", self.count);
        }
        Ok(self.count.to_string().into())
    }
}

export!(Counter);

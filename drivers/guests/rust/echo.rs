//! echo: answers every wave with its body.
#![no_std]

use hyperverse_guest::{export, Failure, Particle, Reply, Wave};

struct Echo;

impl Particle for Echo {
    fn init(_config: &[u8]) -> Result<Self, Failure> {
        Ok(Echo)
    }

    fn handle(&mut self, wave: &Wave<'_>) -> Result<Reply, Failure> {
        Ok(wave.body.into())
    }
}

export!(Echo);

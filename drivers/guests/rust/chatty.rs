//! chatty: its config is a point. On every wave it signals that particle (method
//! `Ext<Chat>`, the wave's body), logs a line, and replies with how many it has sent.
#![no_std]

extern crate alloc;

use alloc::string::{String, ToString};
use hyperverse_guest::{export, log, signal, Failure, Particle, Reply, Wave};

struct Chatty {
    target: String,
    sent: u64,
}

impl Particle for Chatty {
    fn init(config: &[u8]) -> Result<Self, Failure> {
        let target = core::str::from_utf8(config)
            .ok()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Failure::bad_request("chatty needs a point as its config"))?;
        Ok(Chatty {
            target: target.to_string(),
            sent: 0,
        })
    }

    fn handle(&mut self, wave: &Wave<'_>) -> Result<Reply, Failure> {
        signal(&self.target, "Ext<Chat>", wave.body);
        self.sent += 1;
        log("chatty: signal sent");
        Ok(self.sent.to_string().into())
    }
}

export!(Chatty);

//! [`Journal`]: how a failed call is undone. Pure bookkeeping, no wasm.
//!
//! A mechtron keeps a *base* (its config, to run `hv_init` again, or an [`Image`] of its
//! state) and the inputs of the successful calls since. Execution is deterministic, so
//! instantiating afresh, applying the base and replaying those calls rebuilds the state
//! from before a failed call exactly. A new base (a checkpoint: one copy of memory) is
//! taken once the calls since the last one add up to [`Budget`] — so a rollback
//! replays at most about one call's worth of fuel, and a successful call costs no copy
//! of memory until then.

use super::live::Image;

/// One call's input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Input {
    pub method: String,
    pub body: Vec<u8>,
}

/// Where a replay starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Base {
    /// A fresh instance after `hv_init` with this config.
    Init(Vec<u8>),
    /// A fresh instance with this state applied.
    Image(Image),
}

/// When a checkpoint is due: whichever limit the calls since the last one reach first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    pub calls: usize,
    pub bytes: usize,
    pub fuel: u64,
}

impl Budget {
    /// The budget for mechtrons that get `fuel_per_call`: replay at most one call's fuel,
    /// 1024 calls, or 256 KiB of input.
    pub(crate) fn for_fuel(fuel_per_call: u64) -> Self {
        Self {
            calls: 1024,
            bytes: 256 * 1024,
            fuel: fuel_per_call,
        }
    }
}

/// A base and the calls since.
#[derive(Debug)]
pub(crate) struct Journal {
    base: Base,
    since: Vec<Input>,
    bytes: usize,
    fuel: u64,
    budget: Budget,
}

impl Journal {
    pub(crate) fn new(base: Base, budget: Budget) -> Self {
        Self {
            base,
            since: Vec::new(),
            bytes: 0,
            fuel: 0,
            budget,
        }
    }

    /// Records a successful call that burnt `fuel`; true when a checkpoint is due (then
    /// call [`Journal::checkpoint`] with the state after this call).
    pub(crate) fn record(&mut self, input: Input, fuel: u64) -> bool {
        self.bytes += input.method.len() + input.body.len();
        self.fuel = self.fuel.saturating_add(fuel);
        self.since.push(input);
        self.since.len() >= self.budget.calls
            || self.bytes >= self.budget.bytes
            || self.fuel >= self.budget.fuel
    }

    /// Makes `image` the base; nothing to replay after it.
    pub(crate) fn checkpoint(&mut self, image: Image) {
        self.base = Base::Image(image);
        self.since.clear();
        self.bytes = 0;
        self.fuel = 0;
    }

    pub(crate) fn base(&self) -> &Base {
        &self.base
    }

    pub(crate) fn since(&self) -> &[Input] {
        &self.since
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(body: usize) -> Input {
        Input {
            method: "Ext<Go>".into(),
            body: vec![0; body],
        }
    }

    fn image() -> Image {
        Image {
            memory: vec![1; 4],
            globals: vec![],
        }
    }

    #[test]
    fn checkpoints_fall_due_at_the_first_limit_reached() {
        let budget = Budget {
            calls: 3,
            bytes: 100,
            fuel: 1_000,
        };
        let mut journal = Journal::new(Base::Init(b"cfg".to_vec()), budget);
        assert!(!journal.record(input(0), 10));
        assert!(!journal.record(input(0), 10));
        assert!(journal.record(input(0), 10), "third call");
        assert_eq!(journal.since().len(), 3);
        assert_eq!(journal.base(), &Base::Init(b"cfg".to_vec()));
        journal.checkpoint(image());
        assert!(journal.since().is_empty());
        assert_eq!(journal.base(), &Base::Image(image()));

        assert!(journal.record(input(93), 1), "7 + 93 bytes");
        journal.checkpoint(image());
        assert!(!journal.record(input(0), 999));
        assert!(journal.record(input(0), 1), "fuel adds up to the budget");
    }
}

//! [`Mechtron`]: one live mechtron — its instance, its call count and its journal — and
//! what a call's outcome means for it. Runs on a worker thread, one call at a time; the
//! queueing is [`super::slot`]'s.
//!
//! A failed call (out of fuel, over the memory limit, a trap, or a reply status outside
//! 2xx) leaves no trace: the state is rolled back to before the call, the signals it
//! asked for are dropped and it does not count in `calls`. Only its log lines remain.

use std::sync::Arc;

use hyperverse_core::point::Point;
use hyperverse_core::{Error, Result};

use super::abi;
use super::host::Outgoing;
use super::journal::{Base, Budget, Input, Journal};
use super::live::{Failed, Failure, Live, NewError};
use super::metrics::TrapReason;
use super::runtime::{Code, Runtime};
use super::snapshot::Snapshot;

/// A successful call's result.
#[derive(Debug)]
pub(crate) struct Answer {
    pub reply: Vec<u8>,
    /// What it asked for beyond its reply, in order.
    pub outgoing: Vec<Outgoing>,
}

/// One live mechtron.
#[derive(Debug)]
pub(crate) struct Mechtron {
    point: Point,
    code: Arc<Code>,
    live: Live,
    calls: u64,
    journal: Journal,
    /// A call began and did not finish (its worker panicked): roll back first.
    dirty: bool,
}

impl Mechtron {
    /// Instantiates `code` and runs `hv_init` with `config`; what the init asked for is
    /// returned to be sent.
    pub(crate) fn activate(
        rt: &Runtime,
        point: Point,
        code: Arc<Code>,
        config: Vec<u8>,
    ) -> Result<(Self, Vec<Outgoing>)> {
        const AFTER: &str = "it was not activated";
        let mut live = Live::new(rt, &code, &point).map_err(|e| fail_new(rt, &point, e, AFTER))?;
        rt.metrics.invoked();
        let started = std::time::Instant::now();
        let outcome = live.call_init(&config, rt.config.fuel_per_call);
        rt.metrics.called(started.elapsed());
        let outcome = outcome.map_err(|failed| fail(rt, &point, failed, AFTER))?;
        rt.metrics.burnt(outcome.fuel);
        let journal = Journal::new(
            Base::Init(config),
            Budget::for_fuel(rt.config.fuel_per_call),
        );
        let mechtron = Self {
            point,
            code,
            live,
            calls: 0,
            journal,
            dirty: false,
        };
        Ok((mechtron, outcome.outgoing))
    }

    /// Instantiates `code` and gives it the state in `snapshot` (`hv_init` is not run).
    pub(crate) fn restore(
        rt: &Runtime,
        point: Point,
        code: Arc<Code>,
        snapshot: Snapshot,
    ) -> Result<Self> {
        if snapshot.module != code.hash {
            return Err(Error::bad_request(format!(
                "the snapshot is of module {}, but mechtron {point} runs {}",
                snapshot.module, code.hash
            )));
        }
        let names: Vec<&String> = snapshot.globals.iter().map(|(name, _)| name).collect();
        if names.iter().copied().ne(code.layout.globals.iter()) {
            return Err(Error::bad_request(format!(
                "the snapshot has the globals {names:?}, the module {:?}",
                code.layout.globals
            )));
        }
        let limit = rt.memory_limit(&code);
        if snapshot.memory.len() as u64 > limit {
            return Err(Error::TooLarge {
                what: format!("the memory in the snapshot of mechtron {point}"),
                size: snapshot.memory.len() as u64,
                limit,
            });
        }
        let image = super::live::Image {
            memory: snapshot.memory,
            globals: snapshot.globals.into_iter().map(|(_, v)| v).collect(),
        };
        let mut live = Live::new(rt, &code, &point)
            .map_err(|e| fail_new(rt, &point, e, "it was not restored"))?;
        live.apply(&image)?;
        let journal = Journal::new(
            Base::Image(image),
            Budget::for_fuel(rt.config.fuel_per_call),
        );
        Ok(Self {
            point,
            code,
            live,
            calls: snapshot.calls,
            journal,
            dirty: false,
        })
    }

    /// Runs one wave through `hv_handle`.
    pub(crate) fn handle(&mut self, rt: &Runtime, method: String, body: Vec<u8>) -> Result<Answer> {
        let limit = rt.memory_limit(&self.code);
        let size = (method.len() + body.len()) as u64;
        if size > limit {
            return Err(Error::TooLarge {
                what: format!("the input for mechtron {}", self.point),
                size,
                limit,
            });
        }
        if self.dirty {
            self.rollback(rt)?;
        }
        self.dirty = true;
        rt.metrics.invoked();
        let started = std::time::Instant::now();
        let handled = self
            .live
            .call_handle(&method, &body, rt.config.fuel_per_call);
        rt.metrics.called(started.elapsed());
        match handled {
            Ok(outcome) => {
                rt.metrics.burnt(outcome.fuel);
                self.dirty = false;
                self.calls += 1;
                if self.journal.record(Input { method, body }, outcome.fuel) {
                    let image = self.live.capture()?;
                    self.journal.checkpoint(image);
                }
                Ok(Answer {
                    reply: outcome.reply,
                    outgoing: outcome.outgoing,
                })
            }
            Err(failed) => {
                let error = fail(rt, &self.point, failed, "the call was rolled back");
                self.rollback(rt)?;
                Err(error)
            }
        }
    }

    /// Rebuilds the state from before the last call: a fresh instance, the journal's
    /// base, the calls since replayed; then checkpoints it.
    fn rollback(&mut self, rt: &Runtime) -> Result<()> {
        let diverged = |what: String| {
            Error::internal(format!(
                "rolling back mechtron {} failed: {what}",
                self.point
            ))
        };
        let fuel = rt.config.fuel_per_call;
        let mut live =
            Live::new(rt, &self.code, &self.point).map_err(|e| diverged(format!("{e:?}")))?;
        live.set_quiet(true);
        match self.journal.base() {
            Base::Init(config) => {
                let outcome = live
                    .call_init(config, fuel)
                    .map_err(|f| diverged(format!("hv_init: {:?}", f.failure)))?;
                rt.metrics.burnt(outcome.fuel);
            }
            Base::Image(image) => live.apply(image)?,
        }
        for input in self.journal.since() {
            let outcome = live
                .call_handle(&input.method, &input.body, fuel)
                .map_err(|f| diverged(format!("replay: {:?}", f.failure)))?;
            rt.metrics.burnt(outcome.fuel);
        }
        live.set_quiet(false);
        let image = live.capture()?;
        self.journal.checkpoint(image);
        self.live = live;
        self.dirty = false;
        Ok(())
    }

    /// The state now.
    pub(crate) fn snapshot(&mut self, rt: &Runtime) -> Result<Snapshot> {
        if self.dirty {
            self.rollback(rt)?;
        }
        let image = self.live.capture()?;
        Ok(Snapshot {
            module: self.code.hash.clone(),
            calls: self.calls,
            memory: image.memory,
            globals: self
                .code
                .layout
                .globals
                .iter()
                .cloned()
                .zip(image.globals)
                .collect(),
        })
    }

    pub(crate) fn point(&self) -> &Point {
        &self.point
    }
}

/// The error a failed guest call returns, counted in the metrics. `after` says what
/// became of the mechtron.
fn fail(rt: &Runtime, point: &Point, failed: Failed, after: &str) -> Error {
    rt.metrics.burnt(failed.fuel);
    let (error, reason) = match failed.failure {
        Failure::Fuel => (
            Error::internal(format!(
                "fuel exhausted: mechtron {point} used all {} fuel of one call; {after}",
                rt.config.fuel_per_call
            )),
            Some(TrapReason::Fuel),
        ),
        Failure::Memory { at_least, limit } => (
            Error::TooLarge {
                what: format!("memory of mechtron {point} (over its memory limit; {after})"),
                size: at_least,
                limit,
            },
            Some(TrapReason::Memory),
        ),
        Failure::Trap(trap) => (
            Error::internal(format!("mechtron {point} trapped: {trap}; {after}")),
            Some(TrapReason::Trap),
        ),
        Failure::Status(status, reply) => (
            match abi::status_error(point, status, &reply) {
                Err(e) => e,
                Ok(()) => Error::internal(format!("mechtron {point} failed with {status}")),
            },
            None,
        ),
    };
    if let Some(reason) = reason {
        rt.metrics.trapped(reason);
    }
    error
}

fn fail_new(rt: &Runtime, point: &Point, e: NewError, after: &str) -> Error {
    match e {
        NewError::Refused(e) => e,
        NewError::Failed(failed) => fail(rt, point, failed, after),
    }
}

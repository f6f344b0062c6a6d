//! [`Live`]: one instantiated guest (its own `Store`, linear memory and globals) and the
//! calls into it. It runs a call and reports what happened; deciding what a failure
//! means for the mechtron (rollback, metrics, the error returned) is
//! [`super::mechtron`]'s job.

use hyperverse_core::point::Point;
use hyperverse_core::{Error, Result};
use wasmi::{Global, Memory, Store, StoreLimitsBuilder, TrapCode, TypedFunc, Val};

use super::abi::{ALLOC, HANDLE, INIT, MEMORY};
use super::config::PAGE;
use super::host::{Host, Outgoing};
use super::runtime::{Code, Runtime};
use super::snapshot::GlobalValue;

/// Memory and mutable globals (in [`super::abi::Layout::globals`] order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    pub memory: Vec<u8>,
    pub globals: Vec<GlobalValue>,
}

/// What a successful call produced.
#[derive(Debug)]
pub(crate) struct Outcome {
    pub reply: Vec<u8>,
    /// What it asked for beyond its reply, in order.
    pub outgoing: Vec<Outgoing>,
    pub fuel: u64,
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// It used all its fuel.
    Fuel,
    /// It asked to grow its memory past `limit`; the memory it would have had is at
    /// least `at_least` bytes.
    Memory { at_least: u64, limit: u64 },
    /// Any other trap, described.
    Trap(String),
    /// The guest answered a status outside 2xx, with this reply.
    Status(i32, Vec<u8>),
}

/// A failed call and the fuel it burnt.
#[derive(Debug)]
pub(crate) struct Failed {
    pub failure: Failure,
    pub fuel: u64,
}

/// One instance of a mechtron's module.
pub(crate) struct Live {
    store: Store<Host>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    init: Option<TypedFunc<(i32, i32), i32>>,
    handle: TypedFunc<(i32, i32, i32, i32), i32>,
    globals: Vec<Global>,
    /// The memory limit in bytes.
    limit: u64,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("point", &self.store.data().point)
            .field("memory", &self.memory.data_size(&self.store))
            .finish_non_exhaustive()
    }
}

fn missing(what: &str) -> Error {
    Error::internal(format!(
        "the instance lost its {what} export after checking"
    ))
}

impl Live {
    /// Instantiates `code` for the mechtron at `point` (running its start function, if
    /// any, under one call's fuel). `Err` carries what went wrong as a [`Failure`] when
    /// the guest's own code failed.
    pub(crate) fn new(rt: &Runtime, code: &Code, point: &Point) -> Result<Self, NewError> {
        let limit = rt.memory_limit(code);
        if code.layout.min_memory > limit {
            return Err(NewError::Refused(Error::TooLarge {
                what: format!("the memory module {} starts with", code.hash),
                size: code.layout.min_memory,
                limit,
            }));
        }
        let limits = StoreLimitsBuilder::new()
            .memory_size(usize::try_from(limit).unwrap_or(usize::MAX))
            .table_elements(100_000)
            .instances(1)
            .memories(1)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&rt.engine, Host::new(point.clone(), limits));
        store.limiter(|host| &mut host.limits);
        store
            .set_fuel(rt.config.fuel_per_call)
            .map_err(|e| NewError::Refused(Error::internal(format!("fuel metering: {e}"))))?;
        let instance = match rt.linker.instantiate_and_start(&mut store, &code.module) {
            Ok(instance) => instance,
            Err(e) => {
                let failure = classify(&e, 0, limit);
                return Err(NewError::Failed(Failed {
                    fuel: rt.config.fuel_per_call - store.get_fuel().unwrap_or(0),
                    failure,
                }));
            }
        };
        let memory = instance
            .get_memory(&store, MEMORY)
            .ok_or_else(|| NewError::Refused(missing(MEMORY)))?;
        let refused = |what: &str| NewError::Refused(missing(what));
        let alloc = instance
            .get_typed_func(&store, ALLOC)
            .map_err(|_| refused(ALLOC))?;
        let handle = instance
            .get_typed_func(&store, HANDLE)
            .map_err(|_| refused(HANDLE))?;
        let init = match code.layout.has_init {
            true => Some(
                instance
                    .get_typed_func(&store, INIT)
                    .map_err(|_| refused(INIT))?,
            ),
            false => None,
        };
        let globals = code
            .layout
            .globals
            .iter()
            .map(|name| {
                instance
                    .get_global(&store, name)
                    .ok_or_else(|| refused(name))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            store,
            memory,
            alloc,
            init,
            handle,
            globals,
            limit,
        })
    }

    /// Replaying: logs are not written.
    pub(crate) fn set_quiet(&mut self, quiet: bool) {
        self.store.data_mut().quiet = quiet;
    }

    /// The size of linear memory in bytes.
    pub(crate) fn memory_size(&self) -> u64 {
        self.memory.data_size(&self.store) as u64
    }

    fn begin(&mut self, fuel: u64) -> Result<(), Failed> {
        let host = self.store.data_mut();
        host.reply.clear();
        host.outgoing.clear();
        self.store.set_fuel(fuel).map_err(|e| Failed {
            failure: Failure::Trap(format!("fuel metering: {e}")),
            fuel: 0,
        })
    }

    fn end(&mut self, budget: u64, called: Result<i32, wasmi::Error>) -> Result<Outcome, Failed> {
        let fuel = budget.saturating_sub(self.store.get_fuel().unwrap_or(0));
        let host = self.store.data_mut();
        let reply = std::mem::take(&mut host.reply);
        let outgoing = std::mem::take(&mut host.outgoing);
        let failure = match called {
            Ok(status) if (200..300).contains(&status) => {
                return Ok(Outcome {
                    reply,
                    outgoing,
                    fuel,
                });
            }
            Ok(status) => Failure::Status(status, reply),
            Err(e) => classify(&e, self.memory_size(), self.limit),
        };
        Err(Failed { failure, fuel })
    }

    /// Hands the guest `parts`, back to back, in room it makes with `hv_alloc`; returns
    /// where each part starts. No room is asked for when there are no bytes.
    fn input(&mut self, parts: &[&[u8]]) -> Result<Vec<i32>, wasmi::Error> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if total == 0 {
            return Ok(vec![0; parts.len()]);
        }
        let len = i32::try_from(total)
            .map_err(|_| wasmi::Error::new(format!("an input of {total} bytes")))?;
        let ptr = self.alloc.call(&mut self.store, len)?;
        let mut at = ptr as u32 as usize;
        let mut starts = Vec::with_capacity(parts.len());
        for part in parts {
            starts.push(at as i32);
            self.memory.write(&mut self.store, at, part).map_err(|_| {
                wasmi::Error::new(format!(
                    "{ALLOC} returned {ptr}, which has no room for {total} bytes in a memory \
                     of {} bytes",
                    self.memory.data_size(&self.store)
                ))
            })?;
            at += part.len();
        }
        Ok(starts)
    }

    /// Calls `hv_init` with the mechtron's config (a success without a call when the
    /// module has no `hv_init`).
    pub(crate) fn call_init(&mut self, config: &[u8], fuel: u64) -> Result<Outcome, Failed> {
        self.begin(fuel)?;
        let Some(init) = self.init else {
            return self.end(fuel, Ok(200));
        };
        let called = self
            .input(&[config])
            .and_then(|at| init.call(&mut self.store, (at[0], config.len() as i32)));
        self.end(fuel, called)
    }

    /// Calls `hv_handle` with one wave.
    pub(crate) fn call_handle(
        &mut self,
        method: &str,
        body: &[u8],
        fuel: u64,
    ) -> Result<Outcome, Failed> {
        self.begin(fuel)?;
        let handle = self.handle;
        let called = self.input(&[method.as_bytes(), body]).and_then(|at| {
            handle.call(
                &mut self.store,
                (at[0], method.len() as i32, at[1], body.len() as i32),
            )
        });
        self.end(fuel, called)
    }

    /// The guest's state now.
    pub(crate) fn capture(&self) -> Result<Image> {
        let globals = self
            .globals
            .iter()
            .map(|global| match global.get(&self.store) {
                Val::I32(v) => Ok(GlobalValue::I32(v)),
                Val::I64(v) => Ok(GlobalValue::I64(v)),
                Val::F32(v) => Ok(GlobalValue::F32(v.to_bits())),
                Val::F64(v) => Ok(GlobalValue::F64(v.to_bits())),
                other => Err(Error::internal(format!(
                    "a mutable global holds {other:?}, which the layout check refuses"
                ))),
            })
            .collect::<Result<_>>()?;
        Ok(Image {
            memory: self.memory.data(&self.store).to_vec(),
            globals,
        })
    }

    /// Makes `image` the guest's state. Memory grows to the image's size (never shrinks:
    /// an image smaller than the module's initial memory is refused).
    pub(crate) fn apply(&mut self, image: &Image) -> Result<()> {
        let current = self.memory_size();
        let wanted = image.memory.len() as u64;
        if wanted < current || !wanted.is_multiple_of(PAGE) {
            return Err(Error::bad_request(format!(
                "a state with {wanted} bytes of memory does not fit a module whose memory \
                 starts at {current} bytes"
            )));
        }
        if wanted > current {
            self.memory
                .grow(&mut self.store, (wanted - current) / PAGE)
                .map_err(|_| Error::TooLarge {
                    what: "the memory of the state".into(),
                    size: wanted,
                    limit: self.limit,
                })?;
        }
        self.memory
            .data_mut(&mut self.store)
            .copy_from_slice(&image.memory);
        if image.globals.len() != self.globals.len() {
            return Err(Error::bad_request(format!(
                "the state has {} mutable globals, the module {}",
                image.globals.len(),
                self.globals.len()
            )));
        }
        for (global, value) in self.globals.iter().zip(&image.globals) {
            let val = match *value {
                GlobalValue::I32(v) => Val::I32(v),
                GlobalValue::I64(v) => Val::I64(v),
                GlobalValue::F32(v) => Val::F32(wasmi::F32::from_bits(v)),
                GlobalValue::F64(v) => Val::F64(wasmi::F64::from_bits(v)),
            };
            global.set(&mut self.store, val).map_err(|e| {
                Error::bad_request(format!("a global of the state does not fit: {e}"))
            })?;
        }
        Ok(())
    }
}

/// Why instantiating failed: the host refused, or the guest's start code failed.
#[derive(Debug)]
pub(crate) enum NewError {
    Refused(Error),
    Failed(Failed),
}

fn classify(e: &wasmi::Error, memory: u64, limit: u64) -> Failure {
    match e.as_trap_code() {
        Some(TrapCode::OutOfFuel) => Failure::Fuel,
        // The grow asked for whole pages past the limit: at least one more.
        Some(TrapCode::GrowthOperationLimited) => Failure::Memory {
            at_least: memory.max(limit) + PAGE,
            limit,
        },
        Some(code) => Failure::Trap(code.to_string()),
        None => Failure::Trap(e.to_string()),
    }
}

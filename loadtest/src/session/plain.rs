//! The plain-transport baseline of `loadtest local --baseline` on an encrypted cluster:
//! the same build, the same cluster shape and the same load with `transport = plain`,
//! so what sealing every connection costs comes as a ratio measured in the same run.
//!
//! ```text
//! encrypted run and its other baselines ─▶ Processes::stop_running (every process)
//!   ─▶ start_local (same shards, nodes and backend; plain) ─▶ drive (same scenario,
//!   knobs and seed; no baselines) ─▶ PlainTransportReport (throughput, latency, CPU)
//! ```
//!
//! The encrypted cluster is stopped first so the two never share the cores. The second
//! cluster is fresh (new Redis shards, registry-svc, star-nodes), as the first was, with
//! its configs and logs in a directory of its own; its processes are torn down with the
//! rest and listed in the report. This module only sequences; the session's own
//! [`start_local`] and [`drive`] do the work.

use std::path::Path;

use hyperverse_core::wire::TransportMode;

use super::{LocalShape, drive, start_local};
use crate::cli::{LoadArgs, OutputArgs};
use crate::error::{Error, Result};
use crate::process::Processes;
use crate::report::PlainTransportReport;

/// Where the plain cluster's configs and logs go, under the run's directory.
const SUBDIR: &str = "plain-transport";

/// Stops every process of the run, starts `shape` again in plain mode and drives it
/// with `load` and `seed`. A cluster that does not start fails the run (as a baseline
/// node that does not start does); a plain run that was not clean gives a note instead
/// of a figure.
pub(super) async fn measure(
    shape: &LocalShape,
    load: &LoadArgs,
    output: &OutputArgs,
    seed: u64,
    dir: &Path,
    processes: &mut Processes,
) -> Result<std::result::Result<PlainTransportReport, String>> {
    // Said here, as the teardown would say it: stopping them hides it from there.
    for (name, tail) in processes.exited() {
        eprintln!("loadtest: {name} exited on its own during the run{tail}");
    }
    eprintln!("loadtest: baseline: plain transport: stopping the encrypted cluster");
    processes.stop_running();

    let dir = dir.join(SUBDIR);
    std::fs::create_dir_all(&dir)
        .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
    eprintln!(
        "loadtest: baseline: plain transport: the same cluster with transport = plain, the \
         same load (seed {seed})"
    );
    let target = start_local(shape, TransportMode::Plain, &dir, processes).await?;
    let load = LoadArgs {
        seed: Some(seed),
        ..load.clone()
    };
    let output = OutputArgs {
        baseline: false,
        ..output.clone()
    };
    let run = drive(target, &load, &output, &dir, processes).await?;
    Ok(PlainTransportReport::of(run))
}

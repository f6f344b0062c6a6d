//! Checking and repairing the registry on Redis: `registry-svc check` and
//! `registry-svc repair`.
//!
//! This module owns the walk over every shard that finds what the cross-shard write
//! ordering (docs/registry.md, "What is atomic") can leave behind after a crash or a
//! shard that lost its data, the report of it, and the fixes:
//!
//! | finding | repair |
//! |---|---|
//! | an index entry (`P:kids` member) whose record does not exist | `SREM` it, after re-reading that the record is still missing |
//! | a record whose parent exists but does not list it | `SADD` it to the parent's index (a script that checks the parent still exists), after re-reading the record |
//! | a record whose parent is not registered | none: reported (no user data is deleted); with `--delete-orphans`, deleted with its subtree as `delete` does, after re-reading that the parent is still missing |
//! | a record whose `st` names a star not in the live directory | `HDEL st` if it still holds that star (a script), after re-reading the directory: the particle is provisioned afresh on its next wave |
//! | a record whose `h` names a particle that is not registered | `HDEL h` if it still holds that host (a script), after re-reading the host |
//! | a key on a shard the ring does not place it on | none: the shard list or `vnodes` differ from the data's; `repair` refuses to change anything while there are any |
//! | a key or value that cannot be decoded | none: reported for a person to look at |
//!
//! A shard that cannot be reached fails the whole check (naming it): the check never
//! says "clean" about a shard it did not read.
//!
//! **The race.** A record and its parent's index are on different shards, so no fix
//! can check one and change the other atomically. A `register` in flight links the
//! child, then writes its record: a repair that reads the record as missing between the
//! two removes the entry, and the record written next is then missing from its parent's
//! index (invisible to `select` and `children`) until the next repair links it again.
//! A `delete` in flight removes the record, then the entry: a repair that re-links in
//! between leaves an entry without a record, which readers skip and the next repair
//! removes. Nothing is lost either way, but run `repair` on a quiet hyperverse (no
//! registrations or deletions) and `check` afterwards.
//!
//! `repair` checks first, then runs up to [`MAX_PASSES`] repair walks, each followed by
//! a check, while the last check still finds something repairable.

mod fix;
mod probe;
pub mod report;
mod walk;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use hyperverse_core::Result;
use serde::Serialize;

use crate::backend::redis::RedisRegistry;
use crate::config::Settings;
pub use report::{EXAMPLES, Example, Findings, Problem, Report};
pub use walk::SCAN_COUNT;
use walk::{Mode, walk};

/// The most repair walks one `repair` runs (fixes can uncover more: a deleted orphan's
/// unlisted children, say).
pub const MAX_PASSES: usize = 3;

/// Walks every shard and reports what is wrong; changes nothing.
pub async fn check(registry: &RedisRegistry, star_ttl: Duration) -> Result<Report> {
    walk(registry, star_ttl, Mode::Check).await
}

/// How `repair` runs.
#[derive(Debug, Clone, Copy)]
pub struct RepairOptions {
    /// The star directory's TTL (a star not heard from within it is gone).
    pub star_ttl: Duration,
    /// Delete records whose parent is not registered, with their subtrees.
    pub delete_orphans: bool,
}

/// What `repair` found, did, and left.
#[derive(Debug, Clone, Serialize)]
pub struct RepairOutcome {
    /// The check before any change.
    pub found: Report,
    /// The repair walks, each with what it fixed.
    pub passes: Vec<Report>,
    /// The check after the last repair walk (`found` when nothing was repaired).
    pub after: Report,
    /// Why nothing was changed, when repair refused to.
    pub refused: Option<String>,
}

impl RepairOutcome {
    /// Findings of `problem` fixed over every pass.
    pub fn fixed(&self, problem: Problem) -> u64 {
        self.passes.iter().map(|p| p.get(problem).fixed).sum()
    }

    /// The outcome for people.
    pub fn to_text(&self) -> String {
        let mut text = format!("check: {}", self.found.to_text());
        if let Some(why) = &self.refused {
            text += &format!("repair refused, nothing was changed: {why}\n");
            return text;
        }
        if self.passes.is_empty() {
            text += "nothing to repair\n";
            return text;
        }
        for (i, pass) in self.passes.iter().enumerate() {
            text += &format!("repair pass {}: {}", i + 1, pass.to_text());
        }
        text += &format!("after repair: {}", self.after.to_text());
        text
    }
}

/// Checks, then repairs what is repairable and checks again (see the module doc).
pub async fn repair(registry: &RedisRegistry, options: RepairOptions) -> Result<RepairOutcome> {
    let found = check(registry, options.star_ttl).await?;
    let mut outcome = RepairOutcome {
        after: found.clone(),
        found,
        passes: Vec::new(),
        refused: None,
    };
    let misplaced = outcome.found.count(Problem::MisplacedKey);
    if misplaced > 0 {
        outcome.refused = Some(format!(
            "{misplaced} keys are on a shard the ring does not place them on, so every other \
             finding may be an artefact of a shard list or vnodes that differ from the data's: \
             fix the config, or finish `registry-svc rebalance`, then check again"
        ));
        return Ok(outcome);
    }
    let mode = Mode::Repair {
        delete_orphans: options.delete_orphans,
    };
    for _ in 0..MAX_PASSES {
        if outcome.after.repairable(options.delete_orphans) == 0 {
            break;
        }
        let pass = walk(registry, options.star_ttl, mode).await?;
        let fixed_any = pass.fixed() > 0;
        outcome.passes.push(pass);
        outcome.after = check(registry, options.star_ttl).await?;
        if !fixed_any {
            break; // everything found had changed by the time it was re-read
        }
    }
    Ok(outcome)
}

/// Exit status: findings remain.
const FINDINGS: u8 = 1;
/// Exit status: the check could not run (bad config, a shard unreachable).
const FAILED: u8 = 2;

/// `registry-svc check [--json]`: prints the report; exits 0 when clean, 1 with
/// findings, 2 when it could not check.
pub async fn run_check(config: Option<&Path>, json: bool) -> ExitCode {
    let report = match open(config) {
        Ok((registry, ttl)) => check(&registry, ttl).await.map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match report {
        Ok(report) if json => exit(report::json(&report), report.is_clean()),
        Ok(report) => exit(format!("check: {}", report.to_text()), report.is_clean()),
        Err(e) => failed("check", &e),
    }
}

/// `registry-svc repair [--json] [--delete-orphans]`: prints what it found, fixed and
/// left; exits 0 when nothing is left, 1 when findings remain, 2 when it could not run.
pub async fn run_repair(config: Option<&Path>, json: bool, delete_orphans: bool) -> ExitCode {
    let outcome = match open(config) {
        Ok((registry, star_ttl)) => {
            let options = RepairOptions {
                star_ttl,
                delete_orphans,
            };
            repair(&registry, options).await.map_err(|e| e.to_string())
        }
        Err(e) => Err(e),
    };
    match outcome {
        Ok(outcome) if json => exit(report::json(&outcome), outcome.after.is_clean()),
        Ok(outcome) => exit(outcome.to_text(), outcome.after.is_clean()),
        Err(e) => failed("repair", &e),
    }
}

fn exit(output: String, clean: bool) -> ExitCode {
    print!("{output}");
    if !output.ends_with('\n') {
        println!();
    }
    if clean {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(FINDINGS)
    }
}

fn failed(what: &str, why: &str) -> ExitCode {
    eprintln!("registry-svc: {what} failed: {why}");
    ExitCode::from(FAILED)
}

/// The registry over the configured shards, as `serve` builds it, and the star TTL.
fn open(config: Option<&Path>) -> std::result::Result<(RedisRegistry, Duration), String> {
    let settings = Settings::load(config).map_err(|e| e.to_string())?;
    let Some(config) = settings.redis_config() else {
        return Err(
            "check and repair work on Redis shards, and none are configured \
             (set `shards` in the config file or HV_REGISTRY_SHARDS); \
             the in-memory registry keeps nothing to check"
                .into(),
        );
    };
    let registry = RedisRegistry::new(config).map_err(|e| e.to_string())?;
    Ok((registry, settings.star_ttl()))
}

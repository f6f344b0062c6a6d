//! The chaos part of a report (`--scenario chaos`): the topology, what each fault cost
//! the load, what reading the acknowledged creates back found, `registry-svc check`'s
//! verdict — and the checks that turn the goals into the run's exit status.
//!
//! JSON (`chaos` in the report): `rate_per_s`, `calm_s`, `deadline_ms`, `topology`,
//! `before_faults` (a window: `requests`, `errors`, `unanswered`, `error_seconds`,
//! `first_error_s`, `last_error_s`, `errors_by_status`, `errors_by_kind`,
//! `errors_per_second`), `faults`
//! (each: `kind`, `target`, `pid`, `killed_at_s`, `restarted_after_s`,
//! `recovered_after_s`, `failover`, `problem`, the window's fields, `goal_s`,
//! `within_goal`), `unanswered`, `creates` (`acknowledged`, `lost`, `unreadable`,
//! `missing_from_index`, `examples`), `repair_check` (`verdict`: `clean`, `findings`,
//! `unavailable` or `failed`; `command`, `exit_code`, `output`).

use std::fmt::Write as _;

use serde::Serialize;

use super::thousands;
use crate::faults::FaultRecord;
use crate::outage::Window;
use crate::scenario::Check;
use crate::scenario::chaos::ReadBack;

/// The chaos part of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// Requests per second the load was sent at.
    pub rate_per_s: f64,
    /// The calm before the first fault and after each recovery, in seconds.
    pub calm_s: f64,
    /// Each request's client-side deadline, in ms.
    pub deadline_ms: u64,
    /// What ran.
    pub topology: Topology,
    /// The calm before the first fault.
    pub before_faults: Window,
    /// Each fault and what it cost.
    pub faults: Vec<FaultReport>,
    /// Requests of the whole run that got neither an answer nor an error by their
    /// deadline.
    pub unanswered: u64,
    /// The acknowledged creates, read back.
    pub creates: ReadBack,
    /// `registry-svc check` after the run.
    pub repair_check: RepairCheck,
}

/// The replicated topology of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    /// Shards.
    pub shards: usize,
    /// Replicas per shard.
    pub replicas: usize,
    /// Sentinels.
    pub sentinels: usize,
    /// registry-svc instances.
    pub registries: usize,
    /// star-nodes.
    pub nodes: usize,
    /// Sentinel's `down-after-milliseconds`.
    pub down_after_ms: u64,
    /// Sentinel's `failover-timeout`.
    pub failover_timeout_ms: u64,
    /// Whether registry-svc followed the Sentinels (else it had the primaries' URLs).
    pub registry_follows_sentinel: bool,
    /// Whether each star-node had every registry-svc's address (else one each).
    pub star_nodes_know_every_registry: bool,
}

/// One fault and what the load saw of it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    /// The fault.
    #[serde(flatten)]
    pub fault: FaultRecord,
    /// What the requests sent from its kill to the next fault's saw.
    #[serde(flatten)]
    pub window: Window,
    /// The most seconds with errors allowed.
    pub goal_s: u64,
    /// Whether the error seconds stayed within it (and the fault recovered).
    pub within_goal: bool,
}

impl FaultReport {
    /// `fault` with what its window saw.
    pub fn new(fault: FaultRecord, window: Window) -> FaultReport {
        let goal_s = fault.kind.goal().as_secs();
        let within_goal = window.error_seconds <= goal_s && fault.problem.is_none();
        FaultReport {
            fault,
            window,
            goal_s,
            within_goal,
        }
    }
}

/// What `registry-svc check` said.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepairCheck {
    /// `clean` (exit 0), `findings` (exit 1), `unavailable` (this registry-svc has no
    /// `check`), `failed` (anything else).
    pub verdict: Verdict,
    /// The command run.
    pub command: String,
    /// Its exit status.
    pub exit_code: Option<i32>,
    /// The end of its output.
    pub output: String,
}

/// The verdict of `registry-svc check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Nothing to repair.
    Clean,
    /// Something to repair.
    Findings,
    /// Not run: this registry-svc has no `check` subcommand.
    Unavailable,
    /// It could not run, or ended otherwise.
    Failed,
}

impl RepairCheck {
    /// The verdict of a `check` that exited with `code` after printing `output`.
    pub fn of(command: String, code: Option<i32>, output: String) -> RepairCheck {
        let verdict = match code {
            Some(0) => Verdict::Clean,
            Some(1) => Verdict::Findings,
            Some(2) if output.contains("unrecognized subcommand") => Verdict::Unavailable,
            _ => Verdict::Failed,
        };
        RepairCheck {
            verdict,
            command,
            exit_code: code,
            output: tail(&output, 20),
        }
    }

    /// A check that could not be run at all.
    pub fn failed(command: String, why: String) -> RepairCheck {
        RepairCheck {
            verdict: Verdict::Failed,
            command,
            exit_code: None,
            output: why,
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl ChaosReport {
    /// The goals as checks: no request unanswered, no acknowledged create lost (or
    /// unreadable, or missing from its parent's index), nothing failed before the first
    /// fault, each fault within its error window and recovered, and `registry-svc check`
    /// clean. A `check` this registry-svc does not have is no check (the table and the
    /// notes say so): it neither passes nor fails.
    pub fn checks(&self) -> Vec<Check> {
        let c = &self.creates;
        let mut checks = vec![
            Check {
                name: "no request went unanswered".into(),
                ok: self.unanswered == 0,
                detail: format!(
                    "{} requests got neither an answer nor an error within {} ms",
                    self.unanswered, self.deadline_ms
                ),
            },
            Check {
                name: "no acknowledged create was lost".into(),
                ok: c.lost == 0 && c.unreadable == 0,
                detail: format!(
                    "{} acknowledged, {} lost, {} unreadable{}",
                    c.acknowledged,
                    c.lost,
                    c.unreadable,
                    examples(&c.examples)
                ),
            },
            Check {
                name: "every acknowledged create is listed under its parent".into(),
                ok: c.missing_from_index == 0,
                detail: format!("{} missing from the selection", c.missing_from_index),
            },
            Check {
                name: "nothing failed before the first fault".into(),
                ok: self.before_faults.errors + self.before_faults.unanswered == 0,
                detail: format!(
                    "{} requests, {} errors, {} unanswered",
                    self.before_faults.requests,
                    self.before_faults.errors,
                    self.before_faults.unanswered
                ),
            },
        ];
        for f in &self.faults {
            checks.push(Check {
                name: format!(
                    "{} fault: errors for at most {} s, then recovered",
                    f.fault.kind.as_str(),
                    f.goal_s
                ),
                ok: f.within_goal,
                detail: format!(
                    "{}: {} s with errors ({} errors, {} unanswered){}",
                    f.fault.target,
                    f.window.error_seconds,
                    f.window.errors,
                    f.window.unanswered,
                    f.fault
                        .problem
                        .as_ref()
                        .map(|p| format!("; {p}"))
                        .unwrap_or_default()
                ),
            });
        }
        match self.repair_check.verdict {
            Verdict::Unavailable => {}
            verdict => checks.push(Check {
                name: "registry-svc check finds nothing to repair".into(),
                ok: verdict == Verdict::Clean,
                detail: format!(
                    "{} exited {:?}: {}",
                    self.repair_check.command,
                    self.repair_check.exit_code,
                    tail(&self.repair_check.output, 5)
                ),
            }),
        }
        checks
    }

    /// What the notes must say: the `check` not run.
    pub fn notes(&self) -> Vec<String> {
        match self.repair_check.verdict {
            Verdict::Unavailable => vec![format!(
                "TODO: the repair check was NOT run: this registry-svc has no `check` \
                 subcommand yet (issue 13, item 4); `{}` said: {}",
                self.repair_check.command,
                tail(&self.repair_check.output, 1)
            )],
            _ => Vec::new(),
        }
    }

    /// The chaos section of the table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let mut line = |label: &str, value: String| {
            let _ = writeln!(out, "  {label:<20} {value}");
        };
        let t = &self.topology;
        line(
            "topology",
            format!(
                "{} shards × (primary + {} replica{}), {} Sentinels (down after {} ms), {} \
                 registry-svc{}, {} star-nodes",
                t.shards,
                t.replicas,
                if t.replicas == 1 { "" } else { "s" },
                t.sentinels,
                t.down_after_ms,
                t.registries,
                if t.registry_follows_sentinel {
                    " following Sentinel"
                } else {
                    " on the primaries' URLs"
                },
                t.nodes
            ),
        );
        line(
            "chaos load",
            format!(
                "{}/s open loop, calm {:.0} s, deadline {} ms per request",
                thousands(self.rate_per_s.round() as u64),
                self.calm_s,
                thousands(self.deadline_ms)
            ),
        );
        line("before the faults", summary(&self.before_faults));
        for (i, f) in self.faults.iter().enumerate() {
            let r = &f.fault;
            let mut what = format!("{} at {:.1} s", r.target, r.killed_at_s);
            if let Some(back) = r.restarted_after_s {
                let _ = write!(what, ", back {back:.1} s later");
            }
            if let Some(recovered) = r.recovered_after_s {
                let _ = write!(what, ", recovered after {recovered:.1} s");
            }
            if let Some(failover) = &r.failover {
                let _ = write!(
                    what,
                    "; failed over to {} after {:.1} s",
                    failover.new_primary, failover.after_s
                );
            }
            line(&format!("fault {}: {}", i + 1, r.kind.as_str()), what);
            line(
                "",
                format!(
                    "{}; {} s with errors (goal ≤ {} s): {}",
                    summary(&f.window),
                    f.window.error_seconds,
                    f.goal_s,
                    if f.within_goal { "ok" } else { "MISSED" }
                ),
            );
            if !f.window.errors_per_second.is_empty() {
                let shape: Vec<String> = f
                    .window
                    .errors_per_second
                    .iter()
                    .map(u64::to_string)
                    .collect();
                line(
                    "",
                    format!("failed requests by second sent: {}", shape.join(" ")),
                );
            }
            if let Some(problem) = &r.problem {
                line("", format!("PROBLEM: {problem}"));
            }
        }
        let c = &self.creates;
        line(
            "acknowledged creates",
            format!(
                "{} read back: {} lost, {} unreadable, {} missing from the index",
                thousands(c.acknowledged),
                c.lost,
                c.unreadable,
                c.missing_from_index
            ),
        );
        for example in &c.examples {
            line("", example.clone());
        }
        line("unanswered", thousands(self.unanswered));
        let check = &self.repair_check;
        line(
            "repair check",
            match check.verdict {
                Verdict::Clean => format!("clean ({} exited 0)", check.command),
                Verdict::Findings => format!("FINDINGS ({} exited 1)", check.command),
                Verdict::Unavailable => format!(
                    "TODO: not run: this registry-svc has no `check` subcommand yet \
                     ({} was refused)",
                    check.command
                ),
                Verdict::Failed => format!(
                    "FAILED to run ({} exited {:?})",
                    check.command, check.exit_code
                ),
            },
        );
        if matches!(check.verdict, Verdict::Findings | Verdict::Failed) {
            for l in tail(&check.output, 10).lines() {
                line("", l.to_string());
            }
        }
        out
    }
}

/// `requests 3 000, errors 12 (503 unavailable 12), unanswered 0`.
fn summary(w: &Window) -> String {
    let mut text = format!(
        "requests {}, errors {}, unanswered {}",
        thousands(w.requests),
        thousands(w.errors),
        thousands(w.unanswered)
    );
    if !w.errors_by_status.is_empty() {
        let by: Vec<String> = w
            .errors_by_status
            .iter()
            .map(|(status, n)| format!("{status} {}", thousands(*n)))
            .collect();
        let _ = write!(text, " ({})", by.join(", "));
    }
    text
}

fn examples(examples: &[String]) -> String {
    if examples.is_empty() {
        String::new()
    } else {
        format!("; e.g. {}", examples.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::faults::FaultKind;

    fn fault(kind: FaultKind, error_seconds: u64) -> FaultReport {
        let record = FaultRecord {
            kind,
            target: "registry-svc-0".into(),
            pid: 42,
            killed_at_s: 10.0,
            restarted_after_s: Some(2.0),
            recovered_after_s: Some(2.5),
            failover: None,
            problem: None,
            killed_at: Duration::from_secs(10),
        };
        let window = Window {
            requests: 1000,
            errors: 10,
            error_seconds,
            ..Window::default()
        };
        FaultReport::new(record, window)
    }

    fn report(faults: Vec<FaultReport>, verdict: Verdict) -> ChaosReport {
        ChaosReport {
            rate_per_s: 200.0,
            calm_s: 10.0,
            deadline_ms: 10_500,
            topology: Topology {
                shards: 3,
                replicas: 1,
                sentinels: 3,
                registries: 2,
                nodes: 2,
                down_after_ms: 1000,
                failover_timeout_ms: 5000,
                registry_follows_sentinel: true,
                star_nodes_know_every_registry: true,
            },
            before_faults: Window::default(),
            faults,
            unanswered: 0,
            creates: ReadBack {
                acknowledged: 500,
                ..ReadBack::default()
            },
            repair_check: RepairCheck {
                verdict,
                command: "registry-svc check --config r.toml".into(),
                exit_code: Some(0),
                output: String::new(),
            },
        }
    }

    #[test]
    fn goals_become_checks() {
        let good = report(
            vec![
                fault(FaultKind::Registry, 5),
                fault(FaultKind::StarNode, 10),
            ],
            Verdict::Clean,
        );
        let checks = good.checks();
        assert!(checks.iter().all(|c| c.ok), "{checks:?}");
        assert!(checks.iter().any(|c| c.name.contains("registry-svc check")));
        assert!(good.notes().is_empty());

        let slow = report(vec![fault(FaultKind::Registry, 6)], Verdict::Clean);
        let missed: Vec<Check> = slow.checks().into_iter().filter(|c| !c.ok).collect();
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert!(missed[0].name.contains("registry fault"), "{missed:?}");
        assert!(slow.table().contains("MISSED"));

        let mut lost = report(Vec::new(), Verdict::Findings);
        lost.creates.lost = 1;
        lost.unanswered = 2;
        let failed: Vec<String> = lost
            .checks()
            .into_iter()
            .filter(|c| !c.ok)
            .map(|c| c.name)
            .collect();
        assert_eq!(
            failed,
            [
                "no request went unanswered",
                "no acknowledged create was lost",
                "registry-svc check finds nothing to repair"
            ]
        );
    }

    #[test]
    fn a_missing_check_command_is_a_todo_not_a_pass() {
        let r = report(Vec::new(), Verdict::Unavailable);
        assert!(
            !r.checks()
                .iter()
                .any(|c| c.name.contains("registry-svc check"))
        );
        assert!(r.notes()[0].starts_with("TODO"), "{:?}", r.notes());
        assert!(r.table().contains("TODO: not run"));
    }

    #[test]
    fn the_exit_status_of_check_is_its_verdict() {
        let of = |code, output: &str| RepairCheck::of("c".into(), code, output.into()).verdict;
        assert_eq!(of(Some(0), "nothing to repair"), Verdict::Clean);
        assert_eq!(of(Some(1), "3 orphan index entries"), Verdict::Findings);
        assert_eq!(
            of(Some(2), "error: unrecognized subcommand 'check'"),
            Verdict::Unavailable
        );
        assert_eq!(of(Some(2), "configuration: bad"), Verdict::Failed);
        assert_eq!(of(None, ""), Verdict::Failed);
    }
}

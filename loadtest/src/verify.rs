//! The harness's own verification of a run: every request ended exactly once, no
//! answer belonged to another request, and the cluster's counters agree with the
//! harness's. Pure: it reads what was recorded and scraped.
//!
//! With `strict` (`loadtest local`: the harness is the cluster's only client) the
//! gates must have taken exactly the requests the harness sent and the drivers must
//! have handled exactly the pings answered; against an existing cluster (`run`) other
//! clients may add to the counters, so only "at least" is checked.

use serde::Serialize;

use crate::record::{OpKind, Recorder};
use crate::scenario::Check;
use crate::scrape::Deltas;

/// The checks and whether all held.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    /// Whether every check held.
    pub ok: bool,
    /// The checks.
    pub checks: Vec<Check>,
}

impl Verification {
    /// From a list of checks.
    pub fn new(checks: Vec<Check>) -> Verification {
        Verification {
            ok: checks.iter().all(|c| c.ok),
            checks,
        }
    }
}

/// The checks of a run that recorded `recorder` (with `panicked` lost tasks) and, when
/// metrics were scraped, saw `deltas`.
pub fn checks(
    recorder: &Recorder,
    panicked: usize,
    deltas: Option<&Deltas>,
    strict: bool,
) -> Vec<Check> {
    let total = recorder.total();
    let mut checks = vec![Check {
        name: "every request ended exactly once".into(),
        ok: total.sent == total.ok + total.errors && panicked == 0,
        detail: format!(
            "sent {}, answered {}, errors {}{}",
            total.sent,
            total.ok,
            total.errors,
            if panicked > 0 {
                format!(", {panicked} tasks panicked")
            } else {
                String::new()
            }
        ),
    }];
    let mismatched = recorder.errors().get("mismatch").copied().unwrap_or(0);
    checks.push(Check {
        name: "no answer belonged to another request".into(),
        ok: mismatched == 0,
        detail: format!("{mismatched} answers did not match their request"),
    });
    let Some(deltas) = deltas else {
        return checks;
    };
    let pings = recorder.counts(OpKind::Ping);
    let (echoes, counts) = (
        recorder.counts(OpKind::Echo),
        recorder.counts(OpKind::Count),
    );
    let waves = crate::record::Counts {
        sent: pings.sent + echoes.sent + counts.sent,
        ok: pings.ok + echoes.ok + counts.ok,
        errors: pings.errors + echoes.errors + counts.errors,
    };
    let creates = recorder.counts(OpKind::Create);
    let lookups = recorder.counts(OpKind::Lookup);
    let relation = if strict { "exactly" } else { "at least" };
    let holds = |seen: u64, wanted: u64| {
        if strict {
            seen == wanted
        } else {
            seen >= wanted
        }
    };

    if let Some(taken) = deltas.gate_pings.filter(|t| *t > 0 || waves.sent > 0) {
        let sent = waves.sent;
        checks.push(Check {
            name: format!("gates took {relation} the pings sent"),
            ok: holds(taken, sent),
            detail: format!("sent {sent}, gates took {taken}"),
        });
    }
    if let Some(taken) = deltas.gate_creates.filter(|t| *t > 0 || creates.sent > 0) {
        checks.push(Check {
            name: format!("gates took {relation} the creates sent"),
            ok: holds(taken, creates.sent),
            detail: format!("sent {}, gates took {taken}", creates.sent),
        });
    }
    if let Some(handled) = deltas.driver_waves.filter(|h| *h > 0 || waves.sent > 0) {
        let answered = waves.ok;
        let sent = waves.sent;
        // A ping that failed may or may not have reached its driver.
        let ok = if strict && total.errors == 0 {
            handled == answered
        } else if strict {
            handled >= answered && handled <= sent
        } else {
            handled >= answered
        };
        checks.push(Check {
            name: "drivers handled the pings answered".into(),
            ok,
            detail: format!("answered {answered}, drivers handled {handled}"),
        });
    }
    if let (Some(served), true) = (deltas.registry_lookups, lookups.sent > 0) {
        checks.push(Check {
            name: "registry-svc served at least the lookups sent".into(),
            ok: served >= lookups.sent,
            detail: format!("sent {}, registry served {served}", lookups.sent),
        });
    }
    checks
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::record::Outcome;

    fn recorded(ok: u64, failed: u64) -> Recorder {
        let mut r = Recorder::new();
        for i in 0..ok + failed {
            r.sent(OpKind::Ping);
            let outcome = if i < ok {
                Outcome::Ok
            } else {
                Outcome::Failed("503 unavailable".into())
            };
            r.ended(
                OpKind::Ping,
                Duration::ZERO,
                Duration::from_micros(50),
                outcome,
            );
        }
        r
    }

    fn deltas(pings: u64, waves: u64) -> Deltas {
        Deltas {
            gate_pings: Some(pings),
            driver_waves: Some(waves),
            ..Deltas::default()
        }
    }

    #[test]
    fn a_clean_run_passes_every_check() {
        let r = recorded(100, 0);
        let v = Verification::new(checks(&r, 0, Some(&deltas(100, 100)), true));
        assert!(v.ok, "{v:?}");
        assert_eq!(v.checks.len(), 4, "no create check without creates: {v:?}");
    }

    #[test]
    fn counts_that_do_not_add_up_fail() {
        let r = recorded(100, 0);
        let extra = Verification::new(checks(&r, 0, Some(&deltas(101, 100)), true));
        assert!(!extra.ok, "the gate saw a ping the harness did not send");
        let lost = Verification::new(checks(&r, 0, Some(&deltas(100, 99)), true));
        assert!(!lost.ok, "a ping answered OK never reached a driver");
        let panicked = Verification::new(checks(&r, 1, None, true));
        assert!(!panicked.ok);
        // Against a shared cluster others add to the counters: at least is enough.
        let shared = Verification::new(checks(&r, 0, Some(&deltas(150, 140)), false));
        assert!(shared.ok, "{shared:?}");
    }

    #[test]
    fn failed_pings_may_or_may_not_have_reached_a_driver() {
        let r = recorded(90, 10);
        for waves in [90, 95, 100] {
            let v = Verification::new(checks(&r, 0, Some(&deltas(100, waves)), true));
            assert!(v.ok, "{waves}: {v:?}");
        }
        let v = Verification::new(checks(&r, 0, Some(&deltas(100, 101)), true));
        assert!(!v.ok);
    }

    #[test]
    fn a_mismatched_answer_fails() {
        let mut r = Recorder::new();
        r.sent(OpKind::Ping);
        r.ended(
            OpKind::Ping,
            Duration::ZERO,
            Duration::ZERO,
            Outcome::Failed("mismatch".into()),
        );
        assert!(!Verification::new(checks(&r, 0, None, true)).ok);
    }
}

//! What the users of a chaos run saw of each fault: pure arithmetic over the requests'
//! [`Event`]s (when each was sent, when it ended, how).
//!
//! A fault's *window* runs from its kill to the next fault's kill (the last one's to
//! the end of the load). A request counts among the window's `requests` when it was sent
//! in it; a failure counts for the window it *ended* in — a request in flight when a
//! process is killed fails because of that kill, and belongs to that fault. Within it:
//!
//! - `errors`: requests that failed (an error status, a lost connection, no gate
//!   reachable, a wrong answer); `unanswered`: requests whose client-side deadline
//!   passed with neither an answer nor an error. Both count as failed requests below.
//! - `error_seconds`: the whole seconds, counted from the kill, during which at least
//!   one failed request was in flight (from its send, or the kill if it was sent
//!   before, to its end) — a request that hung for 4 s before failing makes 4 or 5 bad
//!   seconds, not one. This is the figure the goals bound.
//! - `first_error_s` / `last_error_s`: from the kill to the first failed request's send
//!   and to the last one's end.
//!
//! The calm before the first fault is a window of its own (`before_faults`), where a
//! healthy cluster fails nothing.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use crate::record::OpKind;

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Answered as expected.
    Ok,
    /// Failed: its status (`503 unavailable`) or what was wrong (`mismatch`).
    Failed(String),
    /// Its client-side deadline passed with no answer and no error.
    Unanswered,
}

/// One request of the load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// What it was.
    pub kind: OpKind,
    /// When it was sent, since the load started.
    pub sent: Duration,
    /// When it ended.
    pub ended: Duration,
    /// How.
    pub ending: Ending,
}

/// The figures of one window.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// Requests sent in it.
    pub requests: u64,
    /// Requests that failed with an error, ending in it.
    pub errors: u64,
    /// Requests that got neither an answer nor an error before their deadline, which
    /// passed in it.
    pub unanswered: u64,
    /// Whole seconds (from the window's start) with a failed request in flight.
    pub error_seconds: u64,
    /// From the window's start to the first failed request's send (0 for one in flight
    /// at the start), in seconds.
    pub first_error_s: Option<f64>,
    /// From the window's start to the last failed request's end, in seconds.
    pub last_error_s: Option<f64>,
    /// Failed requests by status (`unanswered` for those without an answer).
    pub errors_by_status: BTreeMap<String, u64>,
    /// Failed requests by kind of request.
    pub errors_by_kind: BTreeMap<OpKind, u64>,
    /// Failed requests by the second (from the window's start) they were sent in (the
    /// start, for those sent before it), up to the last second with one: the outage's
    /// shape.
    pub errors_per_second: Vec<u64>,
}

/// The longest shape kept in `errors_per_second`.
const MAX_SECONDS: usize = 600;

/// The label of unanswered requests in the counts by status.
pub const UNANSWERED: &str = "unanswered";

/// The figures of `[from, to)`: the requests sent in it, the failures that ended in it;
/// seconds counted from `from`.
pub fn window(events: &[Event], from: Duration, to: Duration) -> Window {
    let mut w = Window::default();
    let mut bad_seconds = std::collections::BTreeSet::new();
    let within = |t: Duration| t >= from && t < to;
    for event in events {
        if within(event.sent) {
            w.requests += 1;
        }
        if event.ending == Ending::Ok || !within(event.ended.max(event.sent)) {
            continue;
        }
        let label = match &event.ending {
            Ending::Ok => continue,
            Ending::Failed(status) => {
                w.errors += 1;
                status.as_str()
            }
            Ending::Unanswered => {
                w.unanswered += 1;
                UNANSWERED
            }
        };
        *w.errors_by_status.entry(label.to_string()).or_default() += 1;
        *w.errors_by_kind.entry(event.kind).or_default() += 1;
        let (sent, ended) = (
            event.sent.max(from) - from,
            event.ended.max(event.sent) - from,
        );
        bad_seconds.extend(sent.as_secs()..=ended.as_secs());
        let second = usize::try_from(sent.as_secs()).unwrap_or(usize::MAX);
        if second < MAX_SECONDS {
            if w.errors_per_second.len() <= second {
                w.errors_per_second.resize(second + 1, 0);
            }
            w.errors_per_second[second] += 1;
        }
        let (sent, ended) = (sent.as_secs_f64(), ended.as_secs_f64());
        w.first_error_s = Some(w.first_error_s.map_or(sent, |f| f.min(sent)));
        w.last_error_s = Some(w.last_error_s.map_or(ended, |l| l.max(ended)));
    }
    w.error_seconds = bad_seconds.len() as u64;
    w
}

/// The windows of faults that struck at `kills` (in order; the last one's lasts as long
/// as the load), and the window before the first (up to `end` when there is none).
pub fn windows(events: &[Event], kills: &[Duration], end: Duration) -> (Window, Vec<Window>) {
    let first = kills.first().copied().unwrap_or(end);
    let before = window(events, Duration::ZERO, first);
    let faults = kills
        .iter()
        .enumerate()
        .map(|(i, from)| {
            // The last window takes everything sent after its kill.
            let to = kills.get(i + 1).copied().unwrap_or(Duration::MAX);
            window(events, *from, to)
        })
        .collect();
    (before, faults)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn event(sent: u64, ended: u64, ending: Ending) -> Event {
        Event {
            kind: OpKind::Ping,
            sent: ms(sent),
            ended: ms(ended),
            ending,
        }
    }

    fn failed(sent: u64, ended: u64) -> Event {
        event(sent, ended, Ending::Failed("503 unavailable".into()))
    }

    #[test]
    fn a_clean_window_has_no_bad_seconds() {
        let events: Vec<Event> = (0..100)
            .map(|i| event(i * 10, i * 10 + 3, Ending::Ok))
            .collect();
        let w = window(&events, ms(0), ms(1000));
        assert_eq!(w.requests, 100);
        assert_eq!((w.errors, w.unanswered, w.error_seconds), (0, 0, 0));
        assert_eq!((w.first_error_s, w.last_error_s), (None, None));
        assert!(w.errors_per_second.is_empty());
    }

    #[test]
    fn a_hanging_failure_spoils_every_second_it_was_in_flight() {
        // Kill at 10 s; a request sent 0.5 s later fails 3.2 s after the kill; another
        // fails at once at 1.1 s.
        let events = vec![
            event(9_000, 9_010, Ending::Ok),
            failed(10_500, 13_200),
            failed(11_100, 11_150),
            event(12_000, 12_010, Ending::Ok),
        ];
        let w = window(&events, ms(10_000), ms(20_000));
        assert_eq!(
            w.requests, 3,
            "the request before the kill is not this window's"
        );
        assert_eq!(w.errors, 2);
        assert_eq!(w.error_seconds, 4, "seconds 0, 1, 2 and 3 after the kill");
        assert_eq!(w.first_error_s, Some(0.5));
        assert_eq!(w.last_error_s, Some(3.2));
        assert_eq!(w.errors_by_status.get("503 unavailable"), Some(&2));
        assert_eq!(w.errors_by_kind.get(&OpKind::Ping), Some(&2));
        assert_eq!(
            w.errors_per_second,
            [1, 1],
            "by the second each was sent in"
        );
    }

    #[test]
    fn unanswered_requests_are_counted_apart_and_spoil_their_seconds() {
        let events = vec![event(100, 10_600, Ending::Unanswered)];
        let w = window(&events, ms(0), ms(20_000));
        assert_eq!((w.errors, w.unanswered), (0, 1));
        assert_eq!(w.error_seconds, 11);
        assert_eq!(w.errors_by_status.get(UNANSWERED), Some(&1));
    }

    #[test]
    fn a_failure_belongs_to_the_window_it_ended_in() {
        let events = vec![
            failed(500, 600),       // before the first fault
            failed(1_900, 2_300),   // in flight at the first kill (2 s): the first fault's
            failed(2_100, 2_200),   // first fault
            failed(7_900, 9_500),   // in flight at the second kill (8 s): the second's
            failed(8_100, 8_200),   // second fault
            failed(30_000, 30_100), // after the end: still the last fault's
        ];
        let (before, faults) = windows(&events, &[ms(2_000), ms(8_000)], ms(20_000));
        assert_eq!((before.requests, before.errors), (2, 1));
        assert_eq!(faults.len(), 2);
        assert_eq!(faults[0].requests, 2, "sent in the window");
        assert_eq!(faults[0].errors, 2);
        assert_eq!(faults[0].error_seconds, 1, "both within its first second");
        assert_eq!(
            faults[0].first_error_s,
            Some(0.0),
            "from the kill, not before it"
        );
        assert_eq!(faults[1].errors, 3);
        assert_eq!(faults[1].error_seconds, 3, "seconds 0, 1 and 22");
    }

    #[test]
    fn without_faults_everything_is_before_them() {
        let events = vec![failed(100, 200)];
        let (before, faults) = windows(&events, &[], ms(1_000));
        assert_eq!(before.errors, 1);
        assert!(faults.is_empty());
    }
}

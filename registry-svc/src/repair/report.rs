//! What a check found (and a repair fixed): counts and up to [`EXAMPLES`] examples per
//! kind of problem, as text for people and as JSON for scripts.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The most examples kept per kind of problem; the counts go on.
pub const EXAMPLES: usize = 20;

/// A kind of problem a check looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Problem {
    /// A member of `P:kids` whose record does not exist. Example: the child, the parent.
    OrphanEntry,
    /// A record whose parent exists but does not list it. Example: the point, the parent.
    UnlinkedRecord,
    /// A record whose parent is not registered. Example: the point, the parent.
    ParentlessRecord,
    /// A record on a star that is not in the live star directory. Example: the point,
    /// the star.
    DanglingStar,
    /// A record whose host particle is not registered. Example: the point, the host.
    DanglingHost,
    /// A key on a shard the ring does not place it on (another shard list or `vnodes`
    /// than the data's). Example: the key, where it is and where it belongs.
    MisplacedKey,
    /// A key or a value that cannot be read as the layout says. Example: the key, why.
    Unreadable,
}

impl Problem {
    /// Every kind, in report order.
    pub const ALL: [Problem; 7] = [
        Problem::OrphanEntry,
        Problem::UnlinkedRecord,
        Problem::ParentlessRecord,
        Problem::DanglingStar,
        Problem::DanglingHost,
        Problem::MisplacedKey,
        Problem::Unreadable,
    ];

    /// Whether `repair` fixes this kind (records without a parent only when told to
    /// delete them).
    pub fn repairable(self, delete_orphans: bool) -> bool {
        match self {
            Problem::OrphanEntry
            | Problem::UnlinkedRecord
            | Problem::DanglingStar
            | Problem::DanglingHost => true,
            Problem::ParentlessRecord => delete_orphans,
            Problem::MisplacedKey | Problem::Unreadable => false,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Problem::OrphanEntry => "index entries without a record",
            Problem::UnlinkedRecord => "records missing from their parent's index",
            Problem::ParentlessRecord => "records whose parent is not registered",
            Problem::DanglingStar => "records on a star missing from the star directory",
            Problem::DanglingHost => "records whose host is not registered",
            Problem::MisplacedKey => "keys on a shard the ring does not place them on",
            Problem::Unreadable => "keys or values that cannot be read",
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            Problem::OrphanEntry => "repair removes the entry",
            Problem::UnlinkedRecord => "repair adds the record back to the index",
            Problem::ParentlessRecord => {
                "not repaired; `repair --delete-orphans` deletes each with its subtree"
            }
            Problem::DanglingStar => {
                "repair clears the star: the particle is placed afresh when next woken"
            }
            Problem::DanglingHost => "repair clears the host",
            Problem::MisplacedKey => {
                "not repaired: the shard list or vnodes differ from the data's; \
                 fix the config or run `registry-svc rebalance`"
            }
            Problem::Unreadable => "not repaired: inspect by hand",
        }
    }

    fn example(self, e: &Example) -> String {
        let (a, b) = (&e.subject, &e.related);
        match self {
            Problem::OrphanEntry => format!("{a} in the index of {b}"),
            Problem::UnlinkedRecord | Problem::ParentlessRecord => format!("{a} (parent {b})"),
            Problem::DanglingStar => format!("{a} on star {b}"),
            Problem::DanglingHost => format!("{a} hosted by {b}"),
            Problem::MisplacedKey | Problem::Unreadable => format!("{a}: {b}"),
        }
    }
}

/// One finding: what it is about, and the other party (see [`Problem`]).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Example {
    /// The point (or key) the finding is about.
    pub subject: String,
    /// The parent, star, host, shard or reason.
    pub related: String,
}

/// The findings of one kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Findings {
    /// How many were found.
    pub count: u64,
    /// How many of them were fixed (a repair pass; 0 in a check).
    pub fixed: u64,
    /// The first [`EXAMPLES`] found, sorted.
    pub examples: Vec<Example>,
}

/// What one walk over the shards found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The shards walked (passwords shown as `***`).
    pub shards: Vec<String>,
    /// Keys of points looked at (star-directory and other `#` keys are not counted).
    pub keys: u64,
    /// Records among them.
    pub records: u64,
    /// Findings by kind; every kind is present.
    pub findings: BTreeMap<Problem, Findings>,
}

impl Report {
    /// An empty report over `shards`.
    pub fn new(shards: Vec<String>) -> Self {
        Self {
            shards,
            keys: 0,
            records: 0,
            findings: Problem::ALL
                .iter()
                .map(|&p| (p, Findings::default()))
                .collect(),
        }
    }

    /// Whether nothing was found.
    pub fn is_clean(&self) -> bool {
        self.total() == 0
    }

    /// The findings of one kind.
    pub fn get(&self, problem: Problem) -> &Findings {
        static NONE: Findings = Findings {
            count: 0,
            fixed: 0,
            examples: Vec::new(),
        };
        self.findings.get(&problem).unwrap_or(&NONE)
    }

    /// How many of one kind were found.
    pub fn count(&self, problem: Problem) -> u64 {
        self.get(problem).count
    }

    /// How many were found, of every kind.
    pub fn total(&self) -> u64 {
        self.findings.values().map(|f| f.count).sum()
    }

    /// How many were fixed, of every kind.
    pub fn fixed(&self) -> u64 {
        self.findings.values().map(|f| f.fixed).sum()
    }

    /// How many findings `repair` would fix.
    pub fn repairable(&self, delete_orphans: bool) -> u64 {
        self.findings
            .iter()
            .filter(|(p, _)| p.repairable(delete_orphans))
            .map(|(_, f)| f.count)
            .sum()
    }

    pub(crate) fn note(&mut self, problem: Problem, subject: String, related: String) {
        let findings = self.findings.entry(problem).or_default();
        findings.count += 1;
        if findings.examples.len() < EXAMPLES {
            findings.examples.push(Example { subject, related });
        }
    }

    pub(crate) fn note_fixed(&mut self, problem: Problem) {
        self.findings.entry(problem).or_default().fixed += 1;
    }

    /// Sorts the examples, so that the same findings print the same way.
    pub(crate) fn finish(mut self) -> Self {
        for findings in self.findings.values_mut() {
            findings.examples.sort();
        }
        self
    }

    /// The report for people: a summary line, then each kind found with its examples.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{} shard{} ({}): {} keys, {} records: ",
            self.shards.len(),
            if self.shards.len() == 1 { "" } else { "s" },
            self.shards.join(", "),
            self.keys,
            self.records,
        );
        match self.total() {
            0 => text.push_str("clean\n"),
            1 => text.push_str("1 finding\n"),
            n => {
                let _ = writeln!(text, "{n} findings");
            }
        }
        for (problem, findings) in &self.findings {
            if findings.count == 0 {
                continue;
            }
            let fixed = match findings.fixed {
                0 => String::new(),
                n => format!(", {n} fixed"),
            };
            let _ = writeln!(
                text,
                "  {}: {}{fixed} ({})",
                problem.title(),
                findings.count,
                problem.remedy()
            );
            for example in &findings.examples {
                let _ = writeln!(text, "    {}", problem.example(example));
            }
            let more = findings
                .count
                .saturating_sub(findings.examples.len() as u64);
            if more > 0 {
                let _ = writeln!(text, "    … and {more} more");
            }
        }
        text
    }
}

/// `value` as pretty JSON (these types always serialize; an error is shown, not hidden).
pub(crate) fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_stop_at_the_limit_but_counts_go_on() {
        let mut report = Report::new(vec!["redis://a/".into()]);
        for i in 0..25 {
            report.note(Problem::OrphanEntry, format!("s:c{i:02}"), "s".into());
        }
        let report = report.finish();
        assert_eq!(report.count(Problem::OrphanEntry), 25);
        assert_eq!(report.get(Problem::OrphanEntry).examples.len(), EXAMPLES);
        let text = report.to_text();
        assert!(
            text.contains("index entries without a record: 25"),
            "{text}"
        );
        assert!(text.contains("s:c00 in the index of s"), "{text}");
        assert!(text.contains("… and 5 more"), "{text}");
        assert!(!report.is_clean());
    }

    #[test]
    fn a_clean_report_says_so_and_lists_every_kind_in_json() {
        let report = Report::new(vec!["redis://a/".into(), "redis://b/".into()]);
        assert!(report.is_clean());
        assert!(
            report.to_text().ends_with("clean\n"),
            "{}",
            report.to_text()
        );
        let json: serde_json::Value = serde_json::from_str(&json(&report)).expect("JSON");
        for kind in [
            "orphan_entry",
            "parentless_record",
            "dangling_star",
            "misplaced_key",
        ] {
            assert_eq!(json["findings"][kind]["count"], 0, "{json}");
        }
    }

    #[test]
    fn only_deletion_makes_parentless_records_repairable() {
        assert!(!Problem::ParentlessRecord.repairable(false));
        assert!(Problem::ParentlessRecord.repairable(true));
        assert!(!Problem::MisplacedKey.repairable(true));
        assert!(Problem::DanglingStar.repairable(false));
    }
}

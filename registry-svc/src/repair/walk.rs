//! One walk over every shard: `SCAN` for the registry's keys, a batch at a time; read
//! the batch's children indexes and records on their shard in one pipeline; ask the
//! other shards about the points they name ([`probe`]); note what is wrong, and in a
//! repair pass fix it ([`fix`]) before the next batch.
//!
//! Memory is bounded per batch: one `SCAN` reply (about [`SCAN_COUNT`] keys), the
//! members of the children indexes among them and one answer per point they name. Only
//! the report (counts and [`EXAMPLES`](super::report::EXAMPLES) examples per kind)
//! outlives a batch.

use std::time::Duration;

use futures::future::join_all;
use hyperverse_core::{Error, Point, Result};
use redis::Value;

use super::fix;
use super::probe::{self, Probe, take};
use super::report::{Problem, Report};
use crate::backend::redis::RedisRegistry;

/// The `COUNT` hint of each `SCAN`: keys read per batch, roughly.
pub const SCAN_COUNT: usize = 256;

/// What a walk does with what it finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Report only.
    Check,
    /// Report, and fix what is repairable.
    Repair { delete_orphans: bool },
}

/// Walks every shard and reports (and in [`Mode::Repair`] fixes) what it finds. Fails,
/// naming them, if any shard cannot be reached: nothing is reported for a shard that
/// was not read.
pub(crate) async fn walk(
    registry: &RedisRegistry,
    star_ttl: Duration,
    mode: Mode,
) -> Result<Report> {
    reachable(registry).await?;
    let shards = registry.shards().iter().map(|s| s.url().to_string());
    let mut walker = Walker {
        registry,
        star_ttl,
        mode,
        report: Report::new(shards.collect()),
    };
    for here in 0..registry.shards().len() {
        walker.shard(here).await?;
    }
    Ok(walker.report.finish())
}

/// Fails naming every shard that does not answer a `PING`.
async fn reachable(registry: &RedisRegistry) -> Result<()> {
    let shards = registry.shards();
    let pings = shards.iter().map(|s| async move { s.ping().await.err() });
    let failures: Vec<String> = join_all(pings)
        .await
        .into_iter()
        .flatten()
        .map(|e| match e {
            Error::Unavailable(why) => why,
            other => other.to_string(),
        })
        .collect();
    if failures.is_empty() {
        return Ok(());
    }
    Err(Error::Unavailable(format!(
        "{} of {} shards cannot be reached, so nothing was checked: {}",
        failures.len(),
        shards.len(),
        failures.join("; ")
    )))
}

/// A record as the walk reads it: its point and the location fields it names.
struct Rec {
    point: Point,
    parent: Point,
    /// `st`: as stored, and as a point.
    star: Option<(String, Point)>,
    /// `h`: as stored, and as a point.
    host: Option<(String, Point)>,
}

struct Walker<'a> {
    registry: &'a RedisRegistry,
    star_ttl: Duration,
    mode: Mode,
    report: Report,
}

impl Walker<'_> {
    async fn shard(&mut self, here: usize) -> Result<()> {
        let shard = &self.registry.shards()[here];
        let pattern = self.registry.keys().pattern();
        let mut cursor: u64 = 0;
        loop {
            let pattern = pattern.clone();
            let (next, keys): (u64, Vec<String>) = shard
                .run(|mut c| async move {
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(pattern)
                        .arg("COUNT")
                        .arg(SCAN_COUNT)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            self.batch(here, keys).await?;
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    /// The points of the batch's children indexes and records that belong on `here`.
    fn sort(&mut self, here: usize, keys: Vec<String>) -> (Vec<Point>, Vec<Point>) {
        let (mut indexes, mut records) = (Vec::new(), Vec::new());
        let layout = self.registry.keys();
        for key in keys {
            let Some((tag, what)) = layout.split(&key) else {
                continue;
            };
            if tag.starts_with('#') {
                continue; // the star directory and other per-shard keys: not a point
            }
            self.report.keys += 1;
            let point: Point = match tag.parse() {
                Ok(point) => point,
                Err(e) => {
                    let why = format!("the tag is not a point: {e}");
                    self.report.note(Problem::Unreadable, key, why);
                    continue;
                }
            };
            let owner = self.registry.shard_index(&point);
            if owner != here {
                let shards = self.registry.shards();
                let (at, belongs) = (shards[here].url(), shards[owner].url());
                let why = format!("on {at}, belongs on {belongs}");
                self.report.note(Problem::MisplacedKey, key, why);
                continue;
            }
            match what {
                "kids" => indexes.push(point),
                // Roots exist without a record; nothing below reads one.
                "rec" if !point.is_root() => records.push(point),
                _ => {}
            }
        }
        (indexes, records)
    }

    async fn batch(&mut self, here: usize, keys: Vec<String>) -> Result<()> {
        let (indexes, records) = self.sort(here, keys);
        if indexes.is_empty() && records.is_empty() {
            return Ok(());
        }
        let (entries, recs) = self.read(here, indexes, records).await?;
        self.judge(entries, recs).await
    }

    /// Reads the children indexes and records of a batch on their shard, `here`, in
    /// one pipeline: the index entries (parent, child) and the records found.
    async fn read(
        &mut self,
        here: usize,
        indexes: Vec<Point>,
        records: Vec<Point>,
    ) -> Result<(Vec<(Point, Point)>, Vec<Rec>)> {
        let layout = self.registry.keys();
        let mut pipe = redis::pipe();
        for point in &indexes {
            pipe.smembers(layout.kids(point));
        }
        for point in &records {
            pipe.hmget(layout.rec(point), &["k", "st", "h"][..]);
        }
        let values: Vec<Value> = self.registry.shards()[here]
            .run(|mut c| async move { pipe.query_async(&mut c).await })
            .await?;
        let mut values = values.into_iter();

        let mut entries = Vec::new();
        for parent in indexes {
            let members: Vec<String> = take(&mut values)?;
            for member in members {
                let why = match member.parse::<Point>() {
                    Ok(child) if parent.is_parent_of(&child) => {
                        entries.push((parent.clone(), child));
                        continue;
                    }
                    Ok(_) => format!("lists {member}, which is not a child of {parent}"),
                    Err(e) => format!("lists {member:?}, which is not a point: {e}"),
                };
                self.report
                    .note(Problem::Unreadable, layout.kids(&parent), why);
            }
        }
        let mut recs = Vec::new();
        for point in records {
            let [kind, star, host]: [Option<Vec<u8>>; 3] = take(&mut values)?;
            if kind.is_none() {
                continue; // deleted since the scan
            }
            self.report.records += 1;
            let Some(parent) = point.parent() else {
                continue;
            };
            let star = self.location(&point, "st", star);
            let host = self.location(&point, "h", host);
            recs.push(Rec {
                point,
                parent,
                star,
                host,
            });
        }
        Ok((entries, recs))
    }

    /// Asks the shards about every point the batch names, then notes (and fixes) what
    /// is wrong.
    async fn judge(&mut self, entries: Vec<(Point, Point)>, recs: Vec<Rec>) -> Result<()> {
        let probes = entries
            .iter()
            .map(|(_, child)| Probe::Exists(child.clone()))
            .chain(recs.iter().flat_map(probes_of));
        let answers = probe::ask(self.registry, self.star_ttl, probes).await?;
        // Every probe is answered; were one not, nothing is reported on its account.
        let yes = |probe: Probe| answers.get(&probe).copied().unwrap_or(true);

        for (parent, child) in entries {
            if !yes(Probe::Exists(child.clone())) {
                self.orphan_entry(parent, child).await?;
            }
        }
        for rec in recs {
            let (point, parent) = (&rec.point, &rec.parent);
            let listed = Probe::Listed {
                parent: parent.clone(),
                child: point.clone(),
            };
            if !yes(Probe::Exists(parent.clone())) {
                self.parentless(point, parent).await?;
            } else if !yes(listed) {
                self.unlinked(point, parent).await?;
            }
            if let Some((seen, star)) = &rec.star
                && !yes(Probe::StarLive(star.clone()))
            {
                self.dangling_star(point, star, seen).await?;
            }
            if let Some((seen, host)) = &rec.host
                && !yes(Probe::Exists(host.clone()))
            {
                self.dangling_host(point, host, seen).await?;
            }
        }
        Ok(())
    }

    /// A location field as stored and as a point; an unreadable one is noted.
    fn location(
        &mut self,
        point: &Point,
        field: &str,
        value: Option<Vec<u8>>,
    ) -> Option<(String, Point)> {
        let value = value?;
        let key = self.registry.keys().rec(point);
        let Ok(text) = String::from_utf8(value) else {
            let why = format!("field {field} is not text");
            self.report.note(Problem::Unreadable, key, why);
            return None;
        };
        match text.parse() {
            Ok(at) => Some((text, at)),
            Err(e) => {
                let why = format!("field {field} {text:?} is not a point: {e}");
                self.report.note(Problem::Unreadable, key, why);
                None
            }
        }
    }

    /// Whether this walk fixes `problem`.
    fn fixes(&self, problem: Problem) -> bool {
        match self.mode {
            Mode::Check => false,
            Mode::Repair { delete_orphans } => problem.repairable(delete_orphans),
        }
    }

    fn found(&mut self, problem: Problem, subject: &Point, related: &Point) -> bool {
        let (subject, related) = (subject.to_string(), related.to_string());
        self.report.note(problem, subject, related);
        self.fixes(problem)
    }

    fn fixed(&mut self, problem: Problem, fixed: bool) {
        if fixed {
            self.report.note_fixed(problem);
        }
    }

    async fn orphan_entry(&mut self, parent: Point, child: Point) -> Result<()> {
        if self.found(Problem::OrphanEntry, &child, &parent) {
            let fixed = fix::unlist(self.registry, &parent, &child).await?;
            self.fixed(Problem::OrphanEntry, fixed);
        }
        Ok(())
    }

    async fn parentless(&mut self, point: &Point, parent: &Point) -> Result<()> {
        if self.found(Problem::ParentlessRecord, point, parent) {
            let fixed = fix::delete_parentless(self.registry, point, parent).await?;
            self.fixed(Problem::ParentlessRecord, fixed);
        }
        Ok(())
    }

    async fn unlinked(&mut self, point: &Point, parent: &Point) -> Result<()> {
        if self.found(Problem::UnlinkedRecord, point, parent) {
            let fixed = fix::relink(self.registry, point, parent).await?;
            self.fixed(Problem::UnlinkedRecord, fixed);
        }
        Ok(())
    }

    async fn dangling_star(&mut self, point: &Point, star: &Point, seen: &str) -> Result<()> {
        if self.found(Problem::DanglingStar, point, star) {
            let fixed = fix::clear_star(self.registry, self.star_ttl, point, star, seen).await?;
            self.fixed(Problem::DanglingStar, fixed);
        }
        Ok(())
    }

    async fn dangling_host(&mut self, point: &Point, host: &Point, seen: &str) -> Result<()> {
        if self.found(Problem::DanglingHost, point, host) {
            let fixed = fix::clear_host(self.registry, point, host, seen).await?;
            self.fixed(Problem::DanglingHost, fixed);
        }
        Ok(())
    }
}

/// What a record's checks ask of other shards.
fn probes_of(rec: &Rec) -> Vec<Probe> {
    let mut probes = vec![
        Probe::Exists(rec.parent.clone()),
        Probe::Listed {
            parent: rec.parent.clone(),
            child: rec.point.clone(),
        },
    ];
    if let Some((_, star)) = &rec.star {
        probes.push(Probe::StarLive(star.clone()));
    }
    if let Some((_, host)) = &rec.host {
        probes.push(Probe::Exists(host.clone()));
    }
    probes
}

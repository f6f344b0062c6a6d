//! The embedded in-memory registry: one mutex over plain maps.
//!
//! Every operation takes the lock once and does all its work under it, so every
//! operation is atomic (including recursive delete and `chown`). Nothing survives the
//! process: this backend is for tests and for running without Redis.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use async_trait::async_trait;
use bytes::Bytes;
use hyperverse_core::particle::{
    Details, ParticleRecord, Properties, SetProperties, Status, Stub, properties_after_update,
    properties_at_create,
};
use hyperverse_core::registry::{
    ArtifactMeta, Registration, RegistryApi, RegistryLimits, StarEntry, Strategy,
    grants_are_counted, may_remove, refuse_root, too_many_grants, too_many_grants_by,
};
use hyperverse_core::security::{
    self, Access, AccessGrant, AccessSource, GrantId, IndexedAccessGrant, ParticleFacts,
    access::kinds_along,
};
use hyperverse_core::{Agent, Error, Kind, Point, Result, Selector};

/// Everything stored about one point.
#[derive(Debug)]
struct Entry {
    record: ParticleRecord,
    children: BTreeSet<Point>,
    sequence: u64,
    grants: BTreeMap<u64, AccessGrant>,
    artifact: Option<(Bytes, ArtifactMeta)>,
    state: Option<Bytes>,
    /// The request id of the registration that wrote the record, if it had one.
    request_id: Option<u64>,
}

impl Entry {
    fn new(record: ParticleRecord) -> Self {
        Self {
            record,
            children: BTreeSet::new(),
            sequence: 0,
            grants: BTreeMap::new(),
            artifact: None,
            state: None,
            request_id: None,
        }
    }

    fn root(point: &Point) -> Self {
        let mut record = ParticleRecord::root();
        record.details.stub.point = point.clone();
        Self::new(record)
    }
}

#[derive(Debug, Default)]
struct State {
    particles: HashMap<Point, Entry>,
    stars: BTreeMap<Point, (StarEntry, Instant)>,
    /// The last grant number given out at each point; kept when the point is deleted so
    /// that a grant id is never reused.
    grant_seqs: HashMap<Point, u64>,
    /// How many grants each granter has stored (the hyperuser is not counted); a granter
    /// at zero has no entry.
    granted: HashMap<Point, usize>,
}

impl State {
    fn get(&self, point: &Point) -> Result<&Entry> {
        self.particles
            .get(point)
            .ok_or_else(|| Error::not_found(format!("particle {point}")))
    }

    fn get_mut(&mut self, point: &Point) -> Result<&mut Entry> {
        if point.is_root() {
            return Ok(self.root_mut(point));
        }
        self.particles
            .get_mut(point)
            .ok_or_else(|| Error::not_found(format!("particle {point}")))
    }

    /// Roots (`ROOT`, `GLOBAL::ROOT`, …) exist without registration.
    fn root_mut(&mut self, root: &Point) -> &mut Entry {
        self.particles
            .entry(root.clone())
            .or_insert_with(|| Entry::root(root))
    }

    fn exists(&self, point: &Point) -> bool {
        point.is_root() || self.particles.contains_key(point)
    }

    fn record(&self, point: &Point) -> Result<ParticleRecord> {
        match self.particles.get(point) {
            Some(entry) => Ok(entry.record.clone()),
            None if point.is_root() => Ok(Entry::root(point).record),
            None => Err(Error::not_found(format!("particle {point}"))),
        }
    }

    fn stub(&self, point: &Point) -> Option<Stub> {
        match self.particles.get(point) {
            Some(entry) => Some(entry.record.details.stub.clone()),
            None if point.is_root() => Some(Entry::root(point).record.details.stub),
            None => None,
        }
    }

    fn access(&self, agent: &Agent, point: &Point) -> Result<Access> {
        security::access(agent, point, self)
    }

    /// The points matching `selector`, walking down from its root point.
    fn select(&self, selector: &Selector) -> Vec<Point> {
        let start = selector.root_point();
        if !self.exists(&start) {
            return Vec::new();
        }
        let mut found = Vec::new();
        let mut stack = vec![(start.clone(), kinds_along(&start, self))];
        while let Some((point, kinds)) = stack.pop() {
            if selector.matches(&point, &kinds) {
                found.push(point.clone());
            }
            if !selector.may_match_below(&point) {
                continue;
            }
            if let Some(entry) = self.particles.get(&point) {
                for child in &entry.children {
                    let mut child_kinds = kinds.clone();
                    if let Some(e) = self.particles.get(child) {
                        child_kinds.push(e.record.kind());
                    }
                    stack.push((child.clone(), child_kinds));
                }
            }
        }
        found.sort();
        found
    }

    /// Gives `granter` back the allowance of one grant, removed or dropped.
    fn release_grant(&mut self, granter: &Point) {
        if let Some(count) = self.granted.get_mut(granter) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.granted.remove(granter);
            }
        }
    }

    /// `point` and everything below it, deepest first, `point` last.
    fn subtree(&self, point: &Point) -> Vec<Point> {
        let mut out = Vec::new();
        let mut stack = vec![(point.clone(), false)];
        while let Some((p, expanded)) = stack.pop() {
            if expanded {
                out.push(p);
                continue;
            }
            stack.push((p.clone(), true));
            if let Some(entry) = self.particles.get(&p) {
                stack.extend(entry.children.iter().map(|c| (c.clone(), false)));
            }
        }
        out
    }
}

impl AccessSource for State {
    fn particle(&self, point: &Point) -> Option<ParticleFacts> {
        self.particles.get(point).map(|e| ParticleFacts {
            kind: e.record.kind(),
            owner: e.record.owner.clone(),
        })
    }

    fn grants_at(&self, point: &Point) -> Vec<IndexedAccessGrant> {
        self.particles
            .get(point)
            .map(|e| {
                e.grants
                    .iter()
                    .map(|(seq, grant)| IndexedAccessGrant {
                        id: GrantId {
                            root: point.clone(),
                            seq: *seq,
                        },
                        grant: grant.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The embedded in-memory registry.
#[derive(Debug)]
pub struct MemoryRegistry {
    state: Mutex<State>,
    limits: RegistryLimits,
}

impl Default for MemoryRegistry {
    fn default() -> Self {
        Self::new(RegistryLimits::default())
    }
}

impl MemoryRegistry {
    /// An empty registry (only `ROOT`) with the given limits.
    pub fn new(limits: RegistryLimits) -> Self {
        let mut state = State::default();
        state.root_mut(&Point::root());
        Self {
            state: Mutex::new(state),
            limits,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way a
        // later reader would misread worse than the panic itself; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl RegistryApi for MemoryRegistry {
    async fn register(&self, registration: &Registration) -> Result<Details> {
        let point = &registration.point;
        let parent = point
            .parent()
            .ok_or_else(|| Error::bad_request(format!("{point} is a root and always exists")))?;
        let properties = properties_at_create(&registration.kind, &registration.properties)?;
        let mut state = self.lock();
        if !state.exists(&parent) {
            return Err(Error::not_found(format!(
                "parent {parent} of {point} is not registered"
            )));
        }
        let record = ParticleRecord {
            details: Details {
                stub: Stub {
                    point: point.clone(),
                    kind: registration.kind,
                    status: registration.status,
                },
                properties,
            },
            location: Default::default(),
            owner: registration.owner.clone(),
        };
        if let Some(existing) = state.particles.get_mut(point) {
            // The same registration again (its answer was lost and it was resent).
            if registration.request_id.is_some() && existing.request_id == registration.request_id {
                return Ok(record.details);
            }
            match registration.strategy {
                Strategy::Commit => {
                    return Err(Error::AlreadyExists(format!("particle {point}")));
                }
                Strategy::Ensure if existing.record.kind() == registration.kind => {
                    return Ok(existing.record.details.clone());
                }
                Strategy::Ensure => {
                    return Err(Error::AlreadyExists(format!(
                        "particle {point} exists as a {}, not a {}",
                        existing.record.kind(),
                        registration.kind
                    )));
                }
                Strategy::Override => {
                    existing.record = record;
                    existing.artifact = None;
                    existing.state = None;
                    existing.request_id = registration.request_id;
                    return Ok(existing.record.details.clone());
                }
            }
        }
        let details = record.details.clone();
        let mut entry = Entry::new(record);
        entry.request_id = registration.request_id;
        state.particles.insert(point.clone(), entry);
        state.get_mut(&parent)?.children.insert(point.clone());
        Ok(details)
    }

    async fn assign_star(&self, point: &Point, star: &Point) -> Result<()> {
        refuse_root(point, "star")?;
        self.lock().get_mut(point)?.record.location.star = Some(star.clone());
        Ok(())
    }

    async fn swap_star(
        &self,
        point: &Point,
        expected: Option<&Point>,
        star: &Point,
    ) -> Result<bool> {
        refuse_root(point, "star")?;
        let mut state = self.lock();
        let location = &mut state.get_mut(point)?.record.location.star;
        if location.as_ref() != expected {
            return Ok(false);
        }
        *location = Some(star.clone());
        Ok(true)
    }

    async fn assign_host(&self, point: &Point, host: &Point) -> Result<()> {
        refuse_root(point, "host")?;
        self.lock().get_mut(point)?.record.location.host = Some(host.clone());
        Ok(())
    }

    async fn set_status(&self, point: &Point, status: Status) -> Result<()> {
        refuse_root(point, "status")?;
        self.lock().get_mut(point)?.record.details.stub.status = status;
        Ok(())
    }

    async fn set_properties(&self, point: &Point, changes: &SetProperties) -> Result<()> {
        refuse_root(point, "properties")?;
        let mut state = self.lock();
        let record = &mut state.get_mut(point)?.record;
        record.details.properties =
            properties_after_update(&record.kind(), &record.details.properties, changes)?;
        Ok(())
    }

    async fn sequence(&self, point: &Point) -> Result<u64> {
        let mut state = self.lock();
        let entry = state.get_mut(point)?;
        entry.sequence += 1;
        Ok(entry.sequence)
    }

    async fn get_properties(&self, point: &Point) -> Result<Properties> {
        Ok(self.lock().record(point)?.details.properties)
    }

    async fn record(&self, point: &Point) -> Result<ParticleRecord> {
        self.lock().record(point)
    }

    async fn select(&self, selector: &Selector) -> Result<Vec<Stub>> {
        let state = self.lock();
        Ok(state
            .select(selector)
            .iter()
            .filter_map(|p| state.stub(p))
            .collect())
    }

    async fn children(&self, point: &Point) -> Result<Vec<Stub>> {
        let state = self.lock();
        if !state.exists(point) {
            return Err(Error::not_found(format!("particle {point}")));
        }
        let Some(entry) = state.particles.get(point) else {
            return Ok(Vec::new());
        };
        Ok(entry
            .children
            .iter()
            .filter_map(|c| state.stub(c))
            .collect())
    }

    async fn delete(&self, point: &Point) -> Result<Vec<Point>> {
        let parent = point.parent().ok_or_else(|| {
            Error::bad_request(format!("{point} is a root and cannot be deleted"))
        })?;
        let mut state = self.lock();
        state.get(point)?;
        let doomed = state.subtree(point);
        for p in &doomed {
            if let Some(entry) = state.particles.remove(p) {
                for grant in entry.grants.values() {
                    state.release_grant(&grant.by_particle);
                }
            }
        }
        if let Ok(parent) = state.get_mut(&parent) {
            parent.children.remove(point);
        }
        Ok(doomed)
    }

    async fn grant(&self, grant: &AccessGrant) -> Result<GrantId> {
        let root = grant.on_point.root_point();
        let granter = &grant.by_particle;
        let mut state = self.lock();
        let counted = grants_are_counted(granter);
        let by_agent = self.limits.max_grants_per_agent;
        if counted && state.granted.get(granter).copied().unwrap_or(0) >= by_agent {
            return Err(too_many_grants_by(granter, by_agent));
        }
        let limit = self.limits.max_grants_per_point;
        if state.get_mut(&root)?.grants.len() >= limit {
            return Err(too_many_grants(&root, limit));
        }
        if counted {
            *state.granted.entry(granter.clone()).or_default() += 1;
        }
        let seq = {
            let counter = state.grant_seqs.entry(root.clone()).or_default();
            *counter += 1;
            *counter
        };
        state.get_mut(&root)?.grants.insert(seq, grant.clone());
        Ok(GrantId { root, seq })
    }

    async fn access(&self, agent: &Agent, point: &Point) -> Result<Access> {
        self.lock().access(agent, point)
    }

    async fn chown(&self, on: &Selector, owner: &Point, by: &Agent) -> Result<u64> {
        let mut state = self.lock();
        let mut points = state.select(on);
        points.retain(|p| !p.is_root());
        for point in &points {
            if !state.access(by, point)?.is_super() {
                return Err(Error::forbidden(format!(
                    "{by} may not change the owner of {point}: only a super agent may"
                )));
            }
        }
        for point in &points {
            state.get_mut(point)?.record.owner = owner.clone();
        }
        Ok(points.len() as u64)
    }

    async fn list_access(
        &self,
        to: Option<&Point>,
        point: &Point,
    ) -> Result<Vec<IndexedAccessGrant>> {
        let state = self.lock();
        if !state.exists(point) {
            return Err(Error::not_found(format!("particle {point}")));
        }
        Ok(security::grants_for(point, to, &*state))
    }

    async fn grants_at(&self, point: &Point) -> Result<Vec<IndexedAccessGrant>> {
        let state = self.lock();
        if !state.exists(point) {
            return Err(Error::not_found(format!("particle {point}")));
        }
        Ok(AccessSource::grants_at(&*state, point))
    }

    async fn remove_access(&self, id: &GrantId, by: &Agent) -> Result<()> {
        let mut state = self.lock();
        let grant = state
            .particles
            .get(&id.root)
            .and_then(|e| e.grants.get(&id.seq))
            .ok_or_else(|| Error::not_found(format!("grant {id}")))?;
        let granter = grant.by_particle.clone();
        may_remove(id, &granter, by, || state.access(by, &granter))?;
        if let Some(removed) = state.get_mut(&id.root)?.grants.remove(&id.seq) {
            state.release_grant(&removed.by_particle);
        }
        Ok(())
    }

    async fn register_star(&self, entry: &StarEntry) -> Result<()> {
        self.lock()
            .stars
            .insert(entry.star.clone(), (entry.clone(), Instant::now()));
        Ok(())
    }

    async fn star_heartbeat(&self, star: &Point, load: u64) -> Result<()> {
        let ttl = self.limits.star_ttl;
        let mut state = self.lock();
        match state.stars.get_mut(star) {
            Some((entry, seen)) if seen.elapsed() < ttl => {
                entry.load = load;
                *seen = Instant::now();
                Ok(())
            }
            Some(_) => {
                state.stars.remove(star);
                Err(Error::not_found(format!(
                    "star {star} expired; register again"
                )))
            }
            None => Err(Error::not_found(format!("star {star} is not registered"))),
        }
    }

    async fn list_stars(&self) -> Result<Vec<StarEntry>> {
        let ttl = self.limits.star_ttl;
        let mut state = self.lock();
        state.stars.retain(|_, (_, seen)| seen.elapsed() < ttl);
        Ok(state.stars.values().map(|(e, _)| e.clone()).collect())
    }

    async fn deregister_star(&self, star: &Point) -> Result<()> {
        self.lock().stars.remove(star);
        Ok(())
    }

    async fn put_artifact(&self, point: &Point, bytes: Bytes) -> Result<ArtifactMeta> {
        let meta = self.limits.check_artifact(point, &bytes)?;
        let mut state = self.lock();
        let entry = state.get_mut(point)?;
        if entry.record.kind() != Kind::Artifact {
            return Err(Error::bad_request(format!(
                "{point} is a {}, not an Artifact",
                entry.record.kind()
            )));
        }
        match &entry.artifact {
            Some((_, existing)) if existing.hash == meta.hash => Ok(meta),
            Some(_) => Err(Error::AlreadyExists(format!(
                "artifact {point} holds other bytes; artifacts are immutable"
            ))),
            None => {
                entry.artifact = Some((bytes, meta.clone()));
                Ok(meta)
            }
        }
    }

    async fn put_state(&self, point: &Point, state: Bytes) -> Result<()> {
        self.limits.check_state(point, &state)?;
        self.lock().get_mut(point)?.state = Some(state);
        Ok(())
    }

    async fn get_state(&self, point: &Point) -> Result<Option<Bytes>> {
        Ok(self.lock().get(point).ok().and_then(|e| e.state.clone()))
    }

    async fn get_artifact(&self, point: &Point) -> Result<Bytes> {
        let state = self.lock();
        state
            .get(point)?
            .artifact
            .as_ref()
            .map(|(bytes, _)| bytes.clone())
            .ok_or_else(|| Error::not_found(format!("artifact bytes of {point}")))
    }
}

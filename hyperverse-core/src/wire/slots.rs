//! [`Slots`]: which connections a listener holds, and whom it lets go when full.
//!
//! A connection takes a [`Ticket`] when it is accepted and keeps it until it closes.
//!
//! - **Handshakes**: at most `handshakes` connections are in their handshake at once.
//!   Past it, the *oldest* one is closed to make room: a flood of connections that
//!   never speak holds at most that many sockets, and a client that completes its
//!   handshake promptly is not locked out for a whole handshake timeout.
//! - **Lanes** (peer machines that proved the shared secret) have a pool of their own
//!   (`lanes`) and never compete with clients.
//! - **Clients**: at most `sessions` at once, and at most `per_source` from one IP
//!   address. A client over either limit is let in, when `evict_idle` is set, by
//!   closing the least recently active client session with nothing in flight (of
//!   that address, when the address is over its limit); otherwise it is told `Busy`.
//!   Anonymous sessions go before authenticated ones, and sessions that never asked
//!   anything before those that did: an attacker's idle sockets make room before a
//!   real client that happens to be between requests.
//!
//! Sessions mark their [`Activity`] (a request read, an answer written) so the table
//! can tell idle ones from busy ones, and watch [`Ticket::evicted`].

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// How many connections of each kind a listener holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlotLimits {
    /// Connections in their handshake at once; past it the oldest is closed.
    pub handshakes: usize,
    /// Client sessions at once.
    pub sessions: usize,
    /// Client sessions from one IP address at once.
    pub per_source: usize,
    /// Lane sessions (peer machines) at once.
    pub lanes: usize,
    /// Whether a full table closes an idle client session to admit a new one.
    pub evict_idle: bool,
}

/// What a connection became after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A peer machine's lane: its own pool.
    Lane,
    /// A client that proved who it is.
    Client,
    /// A client that did not: the first to make room.
    Anonymous,
}

/// What a session does, as the table sees it.
#[derive(Debug)]
pub struct Activity {
    /// The table's logical clock: one tick per thing any session does.
    clock: Arc<AtomicU64>,
    /// The clock at this session's last request or answer.
    last: AtomicU64,
    /// Requests read and not yet answered.
    busy: AtomicU32,
    /// Whether any request was ever read.
    used: AtomicBool,
}

impl Activity {
    fn new(clock: Arc<AtomicU64>) -> Self {
        let activity = Self {
            clock,
            last: AtomicU64::new(0),
            busy: AtomicU32::new(0),
            used: AtomicBool::new(false),
        };
        activity.touch();
        activity
    }

    fn touch(&self) {
        let now = self.clock.fetch_add(1, Ordering::Relaxed);
        self.last.store(now, Ordering::Relaxed);
    }

    /// A request was read.
    pub fn begin(&self) {
        self.busy.fetch_add(1, Ordering::Relaxed);
        self.used.store(true, Ordering::Relaxed);
        self.touch();
    }

    /// A request was answered.
    pub fn end(&self) {
        self.busy.fetch_sub(1, Ordering::Relaxed);
        self.touch();
    }

    /// When idle (nothing in flight): whether it was ever used, and since when it
    /// has been idle — the smaller, the sooner it makes room.
    fn idle_since(&self) -> Option<(bool, u64)> {
        (self.busy.load(Ordering::Relaxed) == 0).then(|| {
            (
                self.used.load(Ordering::Relaxed),
                self.last.load(Ordering::Relaxed),
            )
        })
    }
}

/// The connections of one listener.
#[derive(Debug)]
pub struct Slots {
    limits: SlotLimits,
    clock: Arc<AtomicU64>,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    /// In their handshake, oldest first.
    handshaking: BTreeMap<u64, CancellationToken>,
    clients: HashMap<u64, Client>,
    by_source: HashMap<IpAddr, usize>,
    lanes: usize,
}

#[derive(Debug)]
struct Client {
    source: IpAddr,
    trusted: bool,
    activity: Arc<Activity>,
    evict: CancellationToken,
}

/// Why a session was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Every client slot is taken by a busy session.
    Sessions,
    /// The source address holds its limit of busy sessions.
    Source,
    /// Every lane slot is taken.
    Lanes,
}

impl Full {
    /// The metric label (`too_many_connections`, …).
    pub fn label(self) -> &'static str {
        match self {
            Full::Sessions => "too_many_connections",
            Full::Source => "too_many_from_source",
            Full::Lanes => "too_many_lanes",
        }
    }

    /// What the peer is told.
    pub fn reason(self) -> &'static str {
        match self {
            Full::Sessions => "serving as many connections as it may",
            Full::Source => "serving as many connections from this address as it may",
            Full::Lanes => "serving as many lanes as it may",
        }
    }
}

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Handshake,
    Lane,
    Client,
}

/// One connection's place in [`Slots`]; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    slots: Arc<Slots>,
    id: u64,
    source: IpAddr,
    stage: Stage,
    evicted: CancellationToken,
    activity: Arc<Activity>,
}

impl Slots {
    /// An empty table with `limits`.
    pub fn new(limits: SlotLimits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            clock: Arc::default(),
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ticket for a connection from `source` starting its handshake; closes the
    /// oldest handshake in progress when `handshakes` are running already (that
    /// connection sees [`Ticket::evicted`] and reports itself).
    pub fn accept(self: &Arc<Self>, source: IpAddr) -> Ticket {
        let evicted = CancellationToken::new();
        let mut table = self.table();
        while table.handshaking.len() >= self.limits.handshakes.max(1) {
            if let Some((_, oldest)) = table.handshaking.pop_first() {
                oldest.cancel();
            }
        }
        table.next += 1;
        let id = table.next;
        table.handshaking.insert(id, evicted.clone());
        drop(table);
        Ticket {
            slots: self.clone(),
            id,
            source,
            stage: Stage::Handshake,
            evicted,
            activity: Arc::new(Activity::new(self.clock.clone())),
        }
    }

    /// Moves `ticket` from its handshake into a session of `class`; which limit is
    /// full when it cannot. May close an idle client session (see the module docs).
    pub fn admit(&self, ticket: &mut Ticket, class: Class) -> Result<(), Full> {
        debug_assert_eq!(ticket.stage, Stage::Handshake);
        let mut table = self.table();
        match class {
            Class::Lane => {
                if table.lanes >= self.limits.lanes {
                    return Err(Full::Lanes);
                }
                table.lanes += 1;
                table.handshaking.remove(&ticket.id);
                ticket.stage = Stage::Lane;
            }
            Class::Client | Class::Anonymous => {
                let source = ticket.source;
                let from_source = table.by_source.get(&source).copied().unwrap_or(0);
                if from_source >= self.limits.per_source {
                    self.evict(&mut table, Some(source), Full::Source)?;
                } else if table.clients.len() >= self.limits.sessions {
                    self.evict(&mut table, None, Full::Sessions)?;
                }
                table.handshaking.remove(&ticket.id);
                *table.by_source.entry(source).or_default() += 1;
                table.clients.insert(
                    ticket.id,
                    Client {
                        source,
                        trusted: class == Class::Client,
                        activity: ticket.activity.clone(),
                        evict: ticket.evicted.clone(),
                    },
                );
                ticket.stage = Stage::Client;
            }
        }
        Ok(())
    }

    /// Closes the least recently active idle client (of `source`, if given) and frees
    /// its place; `full` when there is none to close.
    fn evict(&self, table: &mut Table, source: Option<IpAddr>, full: Full) -> Result<(), Full> {
        if !self.limits.evict_idle {
            return Err(full);
        }
        let victim = table
            .clients
            .iter()
            .filter(|(_, c)| source.is_none_or(|s| c.source == s))
            .filter_map(|(id, c)| {
                let (used, since) = c.activity.idle_since()?;
                Some((c.trusted, used, since, *id))
            })
            .min()
            .map(|(.., id)| id)
            .ok_or(full)?;
        if let Some(client) = table.clients.remove(&victim) {
            client.evict.cancel();
            forget_source(table, client.source);
        }
        Ok(())
    }

    /// Client sessions held now.
    pub fn clients(&self) -> usize {
        self.table().clients.len()
    }

    /// Connections in their handshake now.
    pub fn handshaking(&self) -> usize {
        self.table().handshaking.len()
    }
}

fn forget_source(table: &mut Table, source: IpAddr) {
    if let Some(count) = table.by_source.get_mut(&source) {
        *count -= 1;
        if *count == 0 {
            table.by_source.remove(&source);
        }
    }
}

impl Ticket {
    /// Cancelled when the table closes this connection to make room for another.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evicted
    }

    /// Where the session marks what it does.
    pub fn activity(&self) -> &Arc<Activity> {
        &self.activity
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut table = self.slots.table();
        match self.stage {
            Stage::Handshake => {
                table.handshaking.remove(&self.id);
            }
            Stage::Lane => table.lanes -= 1,
            // Gone already if it was evicted.
            Stage::Client => {
                if table.clients.remove(&self.id).is_some() {
                    forget_source(&mut table, self.source);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    fn limits() -> SlotLimits {
        SlotLimits {
            handshakes: 2,
            sessions: 3,
            per_source: 2,
            lanes: 1,
            evict_idle: true,
        }
    }

    fn client(slots: &Arc<Slots>, source: IpAddr) -> Result<Ticket, Full> {
        let mut ticket = slots.accept(source);
        slots.admit(&mut ticket, Class::Client)?;
        Ok(ticket)
    }

    #[test]
    fn a_new_handshake_closes_the_oldest_when_full() {
        let slots = Slots::new(limits());
        let first = slots.accept(ip(1));
        let second = slots.accept(ip(2));
        assert!(!first.evicted().is_cancelled(), "room for two");
        let third = slots.accept(ip(3));
        assert!(
            first.evicted().is_cancelled(),
            "the third makes room: the oldest goes"
        );
        assert!(!second.evicted().is_cancelled() && !third.evicted().is_cancelled());
        assert_eq!(slots.handshaking(), 2);
        drop((first, second, third));
        assert_eq!(slots.handshaking(), 0);
    }

    #[test]
    fn a_source_over_its_limit_evicts_its_own_idlest_session() {
        let slots = Slots::new(limits());
        let other = client(&slots, ip(9)).unwrap();
        let older = client(&slots, ip(1)).unwrap();
        let newer = client(&slots, ip(1)).unwrap();
        newer.activity().begin();
        let third = client(&slots, ip(1)).unwrap();
        assert!(
            older.evicted().is_cancelled(),
            "the idle one of that source goes"
        );
        assert!(!newer.evicted().is_cancelled(), "a busy one stays");
        assert!(!other.evicted().is_cancelled(), "other sources keep theirs");
        assert_eq!(slots.clients(), 3);
        third.activity().begin();
        assert_eq!(
            client(&slots, ip(1)).unwrap_err(),
            Full::Source,
            "all of that source's sessions are busy"
        );
        drop(older);
        assert_eq!(slots.clients(), 3, "an evicted ticket frees nothing twice");
    }

    #[test]
    fn a_session_that_leaves_frees_its_place_in_its_sources_count() {
        let slots = Slots::new(limits());
        let stays = client(&slots, ip(1)).unwrap();
        let leaves = client(&slots, ip(1)).unwrap();
        drop(leaves);
        let _newcomer = client(&slots, ip(1)).unwrap();
        assert!(
            !stays.evicted().is_cancelled(),
            "room without evicting anyone"
        );
        assert_eq!(slots.clients(), 2);
    }

    #[test]
    fn a_full_table_evicts_the_least_recently_active_idle_session() {
        let slots = Slots::new(limits());
        let a = client(&slots, ip(1)).unwrap();
        let b = client(&slots, ip(2)).unwrap();
        let c = client(&slots, ip(3)).unwrap();
        // All three used, `a` last: `b` has been idle longest.
        for session in [&b, &c, &a] {
            session.activity().begin();
            session.activity().end();
        }
        let _d = client(&slots, ip(4)).unwrap();
        assert!(b.evicted().is_cancelled(), "b was idle longest");
        assert!(!a.evicted().is_cancelled() && !c.evicted().is_cancelled());
    }

    #[test]
    fn anonymous_and_unused_sessions_make_room_first() {
        let slots = Slots::new(SlotLimits {
            sessions: 4,
            per_source: 10,
            ..limits()
        });
        let admit = |class| {
            let mut ticket = slots.accept(ip(1));
            slots.admit(&mut ticket, class).unwrap();
            ticket
        };
        let trusted_unused = admit(Class::Client);
        let anonymous_used = admit(Class::Anonymous);
        anonymous_used.activity().begin();
        anonymous_used.activity().end();
        let anonymous_unused = admit(Class::Anonymous);
        let trusted_used = admit(Class::Client);
        trusted_used.activity().begin();
        trusted_used.activity().end();
        let order = [
            &anonymous_unused,
            &anonymous_used,
            &trusted_unused,
            &trusted_used,
        ];
        let mut newcomers = Vec::new();
        for (i, goes) in order.iter().enumerate() {
            let newcomer = admit(Class::Client);
            newcomer.activity().begin();
            newcomers.push(newcomer);
            assert!(goes.evicted().is_cancelled(), "eviction {i} in order");
            for stays in &order[i + 1..] {
                assert!(
                    !stays.evicted().is_cancelled(),
                    "eviction {i} took too many"
                );
            }
        }
    }

    #[test]
    fn without_eviction_a_full_table_says_busy() {
        let slots = Slots::new(SlotLimits {
            evict_idle: false,
            ..limits()
        });
        let _a = client(&slots, ip(1)).unwrap();
        let _b = client(&slots, ip(2)).unwrap();
        let _c = client(&slots, ip(3)).unwrap();
        assert_eq!(client(&slots, ip(4)).unwrap_err(), Full::Sessions);
    }

    #[test]
    fn lanes_have_their_own_pool() {
        let slots = Slots::new(limits());
        let _clients: Vec<_> = (1..=3).map(|i| client(&slots, ip(i)).unwrap()).collect();
        for c in &_clients {
            c.activity().begin();
        }
        let mut lane = slots.accept(ip(7));
        slots.admit(&mut lane, Class::Lane).unwrap();
        let mut second = slots.accept(ip(8));
        assert_eq!(slots.admit(&mut second, Class::Lane), Err(Full::Lanes));
        drop(lane);
        slots.admit(&mut second, Class::Lane).unwrap();
    }
}

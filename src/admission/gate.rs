//! [`Admission`]: the handshake pool, the established sessions and the
//! global budget, and the tickets a connection holds in each phase.

use std::collections::HashMap;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::budget::{Acquired, Budget, ChunkPool, Reservation};
use super::config::AdmissionConfig;
use super::error::AdmissionError;

/// Counters of an [`Admission`] (a snapshot: [`Admission::stats`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AdmissionStats {
    /// Connections in the handshake pool now.
    pub handshaking: u64,
    /// Established sessions now.
    pub established: u64,
    /// Connections admitted to the handshake pool so far.
    pub handshakes_admitted: u64,
    /// Connections refused on accept: the handshake pool was full and none
    /// of it evictable ([`AdmissionError::HandshakePoolFull`]).
    pub refused_handshake_pool_full: u64,
    /// Connections refused on accept: the peer's share of the pool was full
    /// and none of it evictable ([`AdmissionError::HandshakesPerPeer`]).
    pub refused_handshake_per_peer: u64,
    /// Connections evicted from the pool before their first message
    /// ([`AdmissionError::Evicted`]).
    pub handshake_evictions: u64,
    /// Handshakes closed at their deadline ([`AdmissionError::HandshakeTimeout`]).
    pub handshake_timeouts: u64,
    /// Sessions established so far.
    pub sessions_established: u64,
    /// Sessions refused because [`AdmissionConfig::max_sessions`] were open.
    pub refused_sessions_full: u64,
    /// Sessions refused by [`AdmissionConfig::max_sessions_per_peer`].
    pub refused_sessions_per_peer: u64,
    /// Sessions refused by [`AdmissionConfig::max_sessions_per_host`].
    pub refused_sessions_per_host: u64,
    /// Sessions closed by [`AdmissionConfig::idle_timeout`].
    pub idle_timeouts: u64,
    /// Requests that waited for room in the global budget.
    pub budget_waits: u64,
    /// Requests refused because the global budget had no room within
    /// [`AdmissionConfig::budget_wait`] ([`AdmissionError::BudgetExhausted`]).
    pub budget_refusals: u64,
    /// Requests refused because they carry more than the connection budget
    /// ([`AdmissionError::OverBudget`]).
    pub oversize_refusals: u64,
    /// Bytes of the global budget reserved now.
    pub budget_in_use_bytes: u64,
    /// Most bytes of the global budget ever reserved at once.
    pub budget_peak_bytes: u64,
    /// Bytes of request buffers allocated (in use or free for reuse); never
    /// more than the global budget.
    pub buffer_bytes: u64,
}

#[derive(Debug, Default)]
struct Counters {
    handshakes_admitted: AtomicU64,
    refused_handshake_pool_full: AtomicU64,
    refused_handshake_per_peer: AtomicU64,
    handshake_evictions: AtomicU64,
    handshake_timeouts: AtomicU64,
    sessions_established: AtomicU64,
    refused_sessions_full: AtomicU64,
    refused_sessions_per_peer: AtomicU64,
    refused_sessions_per_host: AtomicU64,
    idle_timeouts: AtomicU64,
    budget_waits: AtomicU64,
    budget_refusals: AtomicU64,
    oversize_refusals: AtomicU64,
}

fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

/// One connection in the handshake pool.
#[derive(Debug)]
struct Handshake {
    id: u64,
    peer: IpAddr,
    progressed: Arc<AtomicBool>,
    evicted: Arc<AtomicBool>,
    /// Shut down on eviction, which wakes the connection's blocked read.
    closer: Option<TcpStream>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    /// Oldest first.
    handshakes: Vec<Handshake>,
    sessions: usize,
    sessions_per_peer: HashMap<IpAddr, usize>,
    sessions_per_host: HashMap<String, usize>,
}

/// The admission layer of one server: a bounded handshake pool, bounded
/// established sessions (globally, per peer, per host) and a global byte
/// budget. Share it as `Arc<Admission>`; see the [module docs](super).
///
/// # Example
/// ```
/// use std::net::{IpAddr, Ipv4Addr};
/// use std::sync::Arc;
/// use vvol::admission::{Admission, AdmissionConfig, AdmissionError};
///
/// let admission = Arc::new(Admission::new(AdmissionConfig::default().with_sessions(8, 8, 1)));
/// let peer = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// let mut first = admission.admit_handshake(peer, None)?;
/// first.progressed(); // it sent its first message
/// let session = first.establish(Some("esx-01"))?;
/// let mut second = admission.admit_handshake(peer, None)?;
/// let refused = second.establish(Some("esx-01")).unwrap_err();
/// assert!(matches!(refused, AdmissionError::SessionsPerHost { limit: 1, .. }));
/// drop(session);
/// assert_eq!(admission.stats().refused_sessions_per_host, 1);
/// # Ok::<(), AdmissionError>(())
/// ```
#[derive(Debug)]
pub struct Admission {
    config: AdmissionConfig,
    state: Mutex<State>,
    global: Arc<Budget>,
    pool: Arc<ChunkPool>,
    counters: Counters,
}

impl Admission {
    /// An admission with `config` (clamped, see [`AdmissionConfig`]).
    #[must_use]
    pub fn new(config: AdmissionConfig) -> Self {
        let config = config.clamped();
        Self {
            global: Arc::new(Budget::new(config.global_budget_bytes)),
            pool: Arc::new(ChunkPool::default()),
            config,
            state: Mutex::new(State::default()),
            counters: Counters::default(),
        }
    }

    /// The configuration in force (clamped).
    #[must_use]
    pub fn config(&self) -> &AdmissionConfig {
        &self.config
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a just-accepted connection from `peer` to the handshake pool.
    /// `closer` (a clone of the connection's socket) is shut down if the
    /// connection is later evicted, which fails its blocked I/O.
    ///
    /// When the pool, or the peer's share of it, is full, the oldest
    /// connection there that has not called
    /// [`HandshakeTicket::progressed`] is evicted for this one.
    ///
    /// # Errors
    /// [`AdmissionError::HandshakesPerPeer`] or
    /// [`AdmissionError::HandshakePoolFull`] when nothing can be evicted;
    /// close the connection.
    pub fn admit_handshake(
        self: &Arc<Self>,
        peer: IpAddr,
        closer: Option<TcpStream>,
    ) -> Result<HandshakeTicket, AdmissionError> {
        let mut state = self.state();
        let of_peer = state.handshakes.iter().filter(|h| h.peer == peer).count();
        let victim = if of_peer >= self.config.max_handshakes_per_peer {
            let victim = state
                .handshakes
                .iter()
                .position(|h| h.peer == peer && !h.progressed.load(Ordering::Acquire));
            if victim.is_none() {
                bump(&self.counters.refused_handshake_per_peer);
                return Err(AdmissionError::HandshakesPerPeer {
                    peer,
                    limit: self.config.max_handshakes_per_peer,
                });
            }
            victim
        } else if state.handshakes.len() >= self.config.max_handshakes {
            let victim = state
                .handshakes
                .iter()
                .position(|h| !h.progressed.load(Ordering::Acquire));
            if victim.is_none() {
                bump(&self.counters.refused_handshake_pool_full);
                return Err(AdmissionError::HandshakePoolFull {
                    peer,
                    limit: self.config.max_handshakes,
                });
            }
            victim
        } else {
            None
        };
        if let Some(index) = victim {
            let evicted = state.handshakes.remove(index);
            evicted.evicted.store(true, Ordering::Release);
            if let Some(s) = &evicted.closer {
                let _ = s.shutdown(Shutdown::Both);
            }
            bump(&self.counters.handshake_evictions);
        }
        let id = state.next_id;
        state.next_id += 1;
        let progressed = Arc::new(AtomicBool::new(false));
        let evicted = Arc::new(AtomicBool::new(false));
        state.handshakes.push(Handshake {
            id,
            peer,
            progressed: Arc::clone(&progressed),
            evicted: Arc::clone(&evicted),
            closer,
        });
        assert!(state.handshakes.len() <= self.config.max_handshakes);
        drop(state);
        bump(&self.counters.handshakes_admitted);
        Ok(HandshakeTicket {
            admission: Arc::clone(self),
            id,
            peer,
            deadline: Instant::now() + self.config.handshake_deadline,
            progressed,
            evicted,
            in_pool: true,
        })
    }

    /// A snapshot of the counters.
    #[must_use]
    pub fn stats(&self) -> AdmissionStats {
        let c = &self.counters;
        let state = self.state();
        AdmissionStats {
            handshaking: state.handshakes.len() as u64,
            established: state.sessions as u64,
            handshakes_admitted: get(&c.handshakes_admitted),
            refused_handshake_pool_full: get(&c.refused_handshake_pool_full),
            refused_handshake_per_peer: get(&c.refused_handshake_per_peer),
            handshake_evictions: get(&c.handshake_evictions),
            handshake_timeouts: get(&c.handshake_timeouts),
            sessions_established: get(&c.sessions_established),
            refused_sessions_full: get(&c.refused_sessions_full),
            refused_sessions_per_peer: get(&c.refused_sessions_per_peer),
            refused_sessions_per_host: get(&c.refused_sessions_per_host),
            idle_timeouts: get(&c.idle_timeouts),
            budget_waits: get(&c.budget_waits),
            budget_refusals: get(&c.budget_refusals),
            oversize_refusals: get(&c.oversize_refusals),
            budget_in_use_bytes: self.global.used(),
            budget_peak_bytes: self.global.peak(),
            buffer_bytes: self.pool.allocated_bytes(),
        }
    }

    fn establish(&self, peer: IpAddr, id: u64, host: Option<&str>) -> Result<(), AdmissionError> {
        let mut state = self.state();
        let limits = &self.config;
        let refused = if state.sessions >= limits.max_sessions {
            Some((
                &self.counters.refused_sessions_full,
                AdmissionError::SessionsFull {
                    peer,
                    limit: limits.max_sessions,
                },
            ))
        } else if state.sessions_per_peer.get(&peer).copied().unwrap_or(0)
            >= limits.max_sessions_per_peer
        {
            Some((
                &self.counters.refused_sessions_per_peer,
                AdmissionError::SessionsPerPeer {
                    peer,
                    limit: limits.max_sessions_per_peer,
                },
            ))
        } else {
            host.filter(|h| {
                state.sessions_per_host.get(*h).copied().unwrap_or(0)
                    >= limits.max_sessions_per_host
            })
            .map(|host| {
                (
                    &self.counters.refused_sessions_per_host,
                    AdmissionError::SessionsPerHost {
                        peer,
                        host: host.to_owned(),
                        limit: limits.max_sessions_per_host,
                    },
                )
            })
        };
        if let Some((counter, error)) = refused {
            bump(counter);
            return Err(error);
        }
        let Some(index) = state.handshakes.iter().position(|h| h.id == id) else {
            return Err(AdmissionError::Evicted { peer });
        };
        state.handshakes.remove(index);
        state.sessions += 1;
        *state.sessions_per_peer.entry(peer).or_default() += 1;
        if let Some(host) = host {
            *state.sessions_per_host.entry(host.to_owned()).or_default() += 1;
        }
        assert!(state.sessions <= limits.max_sessions);
        bump(&self.counters.sessions_established);
        Ok(())
    }

    fn leave_pool(&self, id: u64) {
        let mut state = self.state();
        state.handshakes.retain(|h| h.id != id);
    }

    fn end_session(&self, peer: IpAddr, host: Option<&str>) {
        let mut state = self.state();
        assert!(state.sessions > 0, "a session ends once");
        state.sessions -= 1;
        decrement(&mut state.sessions_per_peer, &peer);
        if let Some(host) = host {
            decrement(&mut state.sessions_per_host, host);
        }
    }
}

fn decrement<K, Q>(map: &mut HashMap<K, usize>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

/// A connection's place in the handshake pool; leaves it when dropped or
/// [established](Self::establish).
#[derive(Debug)]
pub struct HandshakeTicket {
    admission: Arc<Admission>,
    id: u64,
    peer: IpAddr,
    deadline: Instant,
    progressed: Arc<AtomicBool>,
    evicted: Arc<AtomicBool>,
    in_pool: bool,
}

impl HandshakeTicket {
    /// The peer's address.
    #[must_use]
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// When the handshake must be over.
    #[must_use]
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Records that the connection sent its first message; from now on it
    /// is never evicted (its deadline still holds).
    pub fn progressed(&self) {
        self.progressed.store(true, Ordering::Release);
    }

    /// Why the handshake ended, when the admission layer ended it: evicted,
    /// or past its deadline (counted as a handshake timeout). `None` when
    /// neither, so the failure was the peer's or the transport's.
    #[must_use]
    pub fn ended_by_admission(&self) -> Option<AdmissionError> {
        if self.evicted.load(Ordering::Acquire) {
            return Some(AdmissionError::Evicted { peer: self.peer });
        }
        if Instant::now() >= self.deadline {
            bump(&self.admission.counters.handshake_timeouts);
            return Some(AdmissionError::HandshakeTimeout {
                peer: self.peer,
                after: self.admission.config.handshake_deadline,
            });
        }
        None
    }

    /// Moves the connection, which identified itself as `host` (if the
    /// transport names one), from the handshake pool to the established
    /// sessions. On success this ticket is spent (dropping it does nothing);
    /// on a refusal it stays in the pool, under its deadline, and may try
    /// again.
    ///
    /// # Errors
    /// [`AdmissionError::SessionsFull`], [`AdmissionError::SessionsPerPeer`]
    /// or [`AdmissionError::SessionsPerHost`]; [`AdmissionError::Evicted`]
    /// if it was evicted meanwhile or is spent.
    pub fn establish(&mut self, host: Option<&str>) -> Result<SessionTicket, AdmissionError> {
        if !self.in_pool {
            return Err(AdmissionError::Evicted { peer: self.peer });
        }
        self.admission.establish(self.peer, self.id, host)?;
        self.in_pool = false;
        let connection = Arc::new(Budget::new(self.admission.config.connection_budget_bytes));
        Ok(SessionTicket {
            admission: Arc::clone(&self.admission),
            peer: self.peer,
            host: host.map(str::to_owned),
            connection,
        })
    }
}

impl Drop for HandshakeTicket {
    fn drop(&mut self) {
        if self.in_pool {
            self.admission.leave_pool(self.id);
        }
    }
}

/// An established session's place among the sessions, and its budget;
/// leaves when dropped.
#[derive(Debug)]
pub struct SessionTicket {
    admission: Arc<Admission>,
    peer: IpAddr,
    host: Option<String>,
    connection: Arc<Budget>,
}

impl SessionTicket {
    /// The peer's address.
    #[must_use]
    pub fn peer(&self) -> IpAddr {
        self.peer
    }

    /// The host the connection named, if any.
    #[must_use]
    pub fn host(&self) -> Option<&str> {
        self.host.as_deref()
    }

    /// [`AdmissionConfig::idle_timeout`].
    #[must_use]
    pub fn idle_timeout(&self) -> Option<Duration> {
        self.admission.config.idle_timeout
    }

    /// The most bytes one request may carry: the connection budget.
    #[must_use]
    pub fn max_request_bytes(&self) -> u64 {
        self.connection.limit()
    }

    /// Bytes of this connection's budget reserved now.
    #[must_use]
    pub fn in_flight_bytes(&self) -> u64 {
        self.connection.used()
    }

    /// Reserves `bytes` (rounded up to whole
    /// [`BUFFER_CHUNK_BYTES`](super::BUFFER_CHUNK_BYTES)) for one request,
    /// with the buffers to hold them: from the connection's budget
    /// (waiting for the connection's earlier requests to be answered), then
    /// from the global budget (waiting up to
    /// [`AdmissionConfig::budget_wait`]).
    ///
    /// # Errors
    /// [`AdmissionError::OverBudget`] when `bytes` passes the connection
    /// budget, [`AdmissionError::BudgetExhausted`] when the global budget
    /// had no room in time; both are counted.
    pub fn reserve(&self, bytes: u64) -> Result<Reservation, AdmissionError> {
        let config = &self.admission.config;
        if bytes > self.connection.limit() {
            bump(&self.admission.counters.oversize_refusals);
            return Err(AdmissionError::OverBudget {
                peer: self.peer,
                requested: bytes,
                limit: self.connection.limit(),
            });
        }
        let rounded = Reservation::rounded(bytes);
        self.connection.acquire(rounded, None, &|| {});
        let counters = &self.admission.counters;
        let waiting = || bump(&counters.budget_waits);
        match self
            .admission
            .global
            .acquire(rounded, Some(config.budget_wait), &waiting)
        {
            Acquired::Now | Acquired::AfterWait => {}
            Acquired::TimedOut => {
                self.connection.release(rounded);
                bump(&self.admission.counters.budget_refusals);
                return Err(AdmissionError::BudgetExhausted {
                    peer: self.peer,
                    requested: bytes,
                    limit: self.admission.global.limit(),
                    waited: config.budget_wait,
                });
            }
        }
        Ok(Reservation::new(
            bytes,
            Arc::clone(&self.connection),
            Arc::clone(&self.admission.global),
            Arc::clone(&self.admission.pool),
        ))
    }

    /// The error for closing this session at its idle timeout (counted).
    #[must_use]
    pub fn idle_timed_out(&self) -> AdmissionError {
        bump(&self.admission.counters.idle_timeouts);
        AdmissionError::IdleTimeout {
            peer: self.peer,
            after: self.admission.config.idle_timeout.unwrap_or_default(),
        }
    }
}

impl Drop for SessionTicket {
    fn drop(&mut self) {
        self.admission.end_session(self.peer, self.host.as_deref());
    }
}

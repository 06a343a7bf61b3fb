//! The dense slot table of one PE.
//!
//! A slot holds two things, written only by the control plane (under its
//! lock) and read without any lock by the data plane (kept in two arrays per
//! chunk, so that resolving touches only words):
//! - `word`: `generation << 32 | (vvol key + 1)`, low half 0 when empty. One
//!   acquire load answers [`Router::resolve`](super::Router::resolve).
//! - `binding`: the [`LiveBinding`] that routed I/O pins for its duration.
//!
//! Publishing stores `binding` before `word`; retiring clears `word` before
//! `binding` (the protocol itself is in `slot.rs`, checked by loom). Slots live in chunks of [`SLOT_CHUNK`] allocated whole on first use,
//! so a PE configured for millions of ids costs memory only for the ids it
//! has handed out.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use super::slot::{self, Word};
use super::stats::Counters;
use super::volume::LiveBinding;
use crate::model::{HostId, SecondaryId, SecondaryIdSpace};

/// Slots allocated together when the first id of their range is handed out.
///
/// 512: every slot holds an `arc-swap` cell whose drop settles debts with
/// every thread that ever loaded through arc-swap, so dropping a chunk costs
/// O(slots x threads); a 4096-slot chunk made a test suite that builds many
/// routers 5x slower. A larger chunk (fewer TLB pages at 1M bindings) was
/// not measurably faster on this machine (BENCHMARKS.md).
pub const SLOT_CHUNK: u64 = 512;

/// Router-side PE state: [`PeState`](crate::PeState) (Drained as Draining) plus removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TableState {
    Active = 0,
    Draining = 1,
    Failed = 2,
    Removed = 3,
}

/// `SLOT_CHUNK` slots: their words together, so that `resolve` touches 8
/// bytes a slot (as dense as a plain `Vec<u64>`), and the bindings that I/O
/// pins beside them.
#[derive(Debug)]
pub(crate) struct Chunk {
    words: [AtomicU64; CHUNK_LEN],
    bindings: [ArcSwapOption<LiveBinding>; CHUNK_LEN],
}

const CHUNK_LEN: usize = SLOT_CHUNK as usize;

/// Host ids whose per-PE in-flight counters are allocated together.
const HOST_CHUNK: usize = 64;

type HostChunk = [AtomicU32; HOST_CHUNK];

impl Chunk {
    fn new() -> Box<Self> {
        Box::new(Self {
            words: std::array::from_fn(|_| AtomicU64::new(0)),
            bindings: std::array::from_fn(|_| ArcSwapOption::empty()),
        })
    }
}

/// The slots of one secondary-id space: the PE's, or in
/// [`SecondaryIdScope::PerPeAndHost`](crate::SecondaryIdScope::PerPeAndHost)
/// scope one host's on the PE.
#[derive(Debug)]
pub(crate) struct Slots {
    first: u64,
    len: u64,
    chunks: Box<[OnceLock<Box<Chunk>>]>,
}

impl Slots {
    fn new(space: SecondaryIdSpace) -> Self {
        let chunks = space.len().div_ceil(SLOT_CHUNK);
        Self {
            first: space.first(),
            len: space.len(),
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
        }
    }
    /// The chunk and the place in it of `sid`; `None` outside the range.
    #[inline]
    fn index(&self, sid: SecondaryId) -> Option<(usize, usize)> {
        let idx = sid.0.wrapping_sub(self.first);
        if idx >= self.len {
            return None;
        }
        Some(((idx / SLOT_CHUNK) as usize, (idx % SLOT_CHUNK) as usize))
    }

    /// The chunk holding `sid` and its place in it, if the chunk exists.
    #[inline]
    fn chunk(&self, sid: SecondaryId) -> Option<(&Chunk, usize)> {
        let (chunk, at) = self.index(sid)?;
        Some((self.chunks.get(chunk)?.get()?, at))
    }

    /// The chunk of `sid` and its place, allocating the chunk. `None` when
    /// `sid` is outside the PE's range.
    fn chunk_or_create(&self, sid: SecondaryId) -> Option<(&Chunk, usize)> {
        let (chunk, at) = self.index(sid)?;
        Some((self.chunks.get(chunk)?.get_or_init(Chunk::new), at))
    }

    /// Pins the binding at `sid` (an `arc-swap` guard), if its chunk exists.
    #[inline]
    pub(crate) fn binding(
        &self,
        sid: SecondaryId,
    ) -> Option<arc_swap::Guard<Option<Arc<LiveBinding>>>> {
        let (chunk, at) = self.chunk(sid)?;
        Some(chunk.bindings[at].load())
    }

    #[inline]
    pub(crate) fn word(&self, sid: SecondaryId) -> Option<Word> {
        let (chunk, at) = self.chunk(sid)?;
        Some(slot::resolve(&chunk.words[at]))
    }

    /// Publishes `binding` at `sid` under its generation.
    fn publish(&self, sid: SecondaryId, binding: Arc<LiveBinding>) {
        let (chunk, at) = self
            .chunk_or_create(sid)
            .expect("the control plane only hands out ids inside the PE's range");
        let (generation, key) = (binding.generation, binding.volume.key);
        slot::publish(
            &chunk.words[at],
            &chunk.bindings[at],
            generation,
            key,
            binding,
        );
    }

    /// Replaces the binding at `sid` (same generation, new host set).
    fn replace(&self, sid: SecondaryId, binding: Arc<LiveBinding>) -> bool {
        let Some((chunk, at)) = self.chunk(sid) else {
            return false;
        };
        debug_assert_eq!(
            Word::decode(chunk.words[at].load(Ordering::Relaxed)).generation,
            binding.generation
        );
        chunk.bindings[at].store(Some(binding));
        true
    }

    /// Empties the slot at `sid`, keeping its generation.
    fn retire(&self, sid: SecondaryId) -> bool {
        let Some((chunk, at)) = self.chunk(sid) else {
            return false;
        };
        slot::retire(&chunk.words[at], &chunk.bindings[at]);
        true
    }

    /// Bytes held by allocated slot chunks.
    fn slot_bytes(&self) -> usize {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .map(|_| std::mem::size_of::<Chunk>())
            .sum()
    }
}

/// One PE's router state: its slots (one space, or one per host), state,
/// queue and counters.
#[derive(Debug)]
pub(crate) struct PeTable {
    /// The PE's one space; empty (no chunk ever made) in per-host scope.
    slots: Slots,
    /// Per-host spaces, indexed by host id (`Limits::max_hosts` cells);
    /// empty in per-PE scope. A host's slots are made on its first binding
    /// here and kept for the PE's life (readers hold no lock, so they are
    /// never freed); their chunks come on first use as in the PE's space.
    /// Resolving through them costs one more load than per-PE scope.
    hosts: Box<[OnceLock<Box<Slots>>]>,
    space: SecondaryIdSpace,
    state: AtomicU8,
    /// Depth of the array-side queue shared by every host.
    pub(crate) queue_depth: u32,
    /// Commands in flight on the PE, all hosts together.
    pub(crate) in_flight: AtomicU32,
    /// Depth of each host's own queue on the PE (ESXi
    /// `Scsi.ScsiVVolPESNRO`).
    pub(crate) host_queue_depth: u32,
    /// Commands in flight per host, in chunks of [`HOST_CHUNK`] host ids
    /// allocated when a host is first mapped (or first sends I/O).
    host_in_flight: Box<[OnceLock<Box<HostChunk>>]>,
    pub(crate) counters: Counters,
    /// Bumped on every publish, replace, retire and state change.
    pub(crate) changes: AtomicU64,
}

impl PeTable {
    /// A PE table with room for `max_hosts` hosts' queue counters;
    /// `per_host_cells` > 0 makes its secondary ids per host with that many
    /// host cells.
    pub(crate) fn new(
        space: SecondaryIdSpace,
        queue_depth: u32,
        host_queue_depth: u32,
        max_hosts: u32,
        per_host_cells: u32,
    ) -> Self {
        Self {
            host_queue_depth,
            host_in_flight: (0..(max_hosts as usize).div_ceil(HOST_CHUNK))
                .map(|_| OnceLock::new())
                .collect(),
            slots: Slots::new(space),
            hosts: (0..per_host_cells).map(|_| OnceLock::new()).collect(),
            space,
            state: AtomicU8::new(TableState::Active as u8),
            queue_depth,
            in_flight: AtomicU32::new(0),
            counters: Counters::default(),
            changes: AtomicU64::new(0),
        }
    }

    /// The in-flight counter of `host` on this PE; `None` for a host id
    /// past the plane's `max_hosts`. Allocates the host's chunk on first
    /// use (the control plane does it when it maps the PE to the host).
    #[inline]
    pub(crate) fn host_in_flight(&self, host: HostId) -> Option<&AtomicU32> {
        let i = host.0 as usize;
        let chunk = self.host_in_flight.get(i / HOST_CHUNK)?;
        Some(
            &chunk.get_or_init(|| Box::new(std::array::from_fn(|_| AtomicU32::new(0))))
                [i % HOST_CHUNK],
        )
    }

    /// The slots `host` addresses: the PE's in per-PE scope (whatever the
    /// host), the host's in per-host scope; `None` for no host in per-host
    /// scope (a secondary id alone names nothing there) or a host without
    /// slots yet.
    #[inline]
    pub(crate) fn slots(&self, host: Option<HostId>) -> Option<&Slots> {
        if self.hosts.is_empty() {
            return Some(&self.slots);
        }
        Some(self.hosts.get(host?.0 as usize)?.get()?)
    }

    fn slots_or_create(&self, host: Option<HostId>) -> &Slots {
        match host {
            None => &self.slots,
            Some(h) => self
                .hosts
                .get(h.0 as usize)
                .expect("host ids are below max_hosts")
                .get_or_init(|| Box::new(Slots::new(self.space))),
        }
    }

    pub(crate) fn state(&self) -> TableState {
        match self.state.load(Ordering::Acquire) {
            0 => TableState::Active,
            1 => TableState::Draining,
            2 => TableState::Failed,
            _ => TableState::Removed,
        }
    }

    pub(crate) fn set_state(&self, state: TableState) {
        self.state.store(state as u8, Ordering::Release);
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Publishes `binding` at `sid` of `host`'s space (`None`: the PE's)
    /// under its generation. Control plane only.
    pub(crate) fn publish(
        &self,
        host: Option<HostId>,
        sid: SecondaryId,
        binding: Arc<LiveBinding>,
    ) {
        self.slots_or_create(host).publish(sid, binding);
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Replaces the binding at `sid` (same generation, new host set).
    pub(crate) fn replace(
        &self,
        host: Option<HostId>,
        sid: SecondaryId,
        binding: Arc<LiveBinding>,
    ) {
        if self
            .slots_for_write(host)
            .is_some_and(|s| s.replace(sid, binding))
        {
            self.changes.fetch_add(1, Ordering::Release);
        }
    }

    /// Empties the slot at `sid`, keeping its generation.
    pub(crate) fn retire(&self, host: Option<HostId>, sid: SecondaryId) {
        if self.slots_for_write(host).is_some_and(|s| s.retire(sid)) {
            self.changes.fetch_add(1, Ordering::Release);
        }
    }

    fn slots_for_write(&self, host: Option<HostId>) -> Option<&Slots> {
        match host {
            None => Some(&self.slots),
            Some(h) => Some(self.hosts.get(h.0 as usize)?.get()?),
        }
    }

    /// Bytes held by allocated slot chunks (and per-host slot tables).
    pub(crate) fn slot_bytes(&self) -> usize {
        let host_tables: usize = self
            .hosts
            .iter()
            .filter_map(OnceLock::get)
            .map(|s| s.slot_bytes() + std::mem::size_of::<Slots>())
            .sum();
        self.slots.slot_bytes()
            + host_tables
            + self.hosts.len() * std::mem::size_of::<OnceLock<Box<Slots>>>()
    }
}

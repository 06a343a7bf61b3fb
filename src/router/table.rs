//! The dense slot table of one PE.
//!
//! A slot holds two things, written only by the control plane (under its
//! lock) and read without any lock by the data plane:
//! - `word`: `generation << 32 | (vvol key + 1)`, low half 0 when empty. One
//!   acquire load answers [`Router::resolve`](super::Router::resolve).
//! - `binding`: the [`LiveBinding`] that routed I/O pins for its duration.
//!
//! Publishing stores `binding` before `word`; retiring clears `word` before
//! `binding`. Slots live in chunks of [`SLOT_CHUNK`] allocated on first use,
//! so a PE configured for millions of ids costs memory only for the ids it
//! has handed out.

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwapOption;

use super::stats::Counters;
use super::volume::LiveBinding;
use crate::model::{Generation, PeState, SecondaryId, SecondaryIdSpace, VvolKey};

/// Slots allocated together when the first id of their range is handed out.
pub const SLOT_CHUNK: u64 = 512;

const EMPTY_LOW: u64 = 0;

/// Router-side PE state: [`PeState`] plus removal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum TableState {
    Active = 0,
    Draining = 1,
    Failed = 2,
    Removed = 3,
}

impl From<PeState> for TableState {
    fn from(state: PeState) -> Self {
        match state {
            PeState::Active => Self::Active,
            PeState::Draining => Self::Draining,
            PeState::Failed => Self::Failed,
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Slot {
    word: AtomicU64,
    binding: ArcSwapOption<LiveBinding>,
}

impl Slot {
    pub(crate) fn binding(&self) -> arc_swap::Guard<Option<Arc<LiveBinding>>> {
        self.binding.load()
    }
}

/// What a slot word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    pub(crate) generation: Generation,
    pub(crate) key: Option<VvolKey>,
}

impl Word {
    const fn decode(raw: u64) -> Self {
        let low = raw & 0xFFFF_FFFF;
        Self {
            generation: Generation((raw >> 32) as u32),
            key: if low == EMPTY_LOW {
                None
            } else {
                Some(VvolKey((low - 1) as u32))
            },
        }
    }

    const fn encode(generation: Generation, key: Option<VvolKey>) -> u64 {
        let low = match key {
            Some(k) => k.0 as u64 + 1,
            None => EMPTY_LOW,
        };
        ((generation.0 as u64) << 32) | low
    }
}

#[derive(Debug)]
pub(crate) struct PeTable {
    first: u64,
    len: u64,
    chunks: Box<[OnceLock<Box<[Slot]>>]>,
    state: AtomicU8,
    pub(crate) queue_depth: u32,
    pub(crate) in_flight: AtomicU32,
    pub(crate) counters: Counters,
    /// Bumped on every publish, replace, retire and state change.
    pub(crate) changes: AtomicU64,
}

impl PeTable {
    pub(crate) fn new(space: SecondaryIdSpace, queue_depth: u32) -> Self {
        let chunks = space.len().div_ceil(SLOT_CHUNK);
        Self {
            first: space.first(),
            len: space.len(),
            chunks: (0..chunks).map(|_| OnceLock::new()).collect(),
            state: AtomicU8::new(TableState::Active as u8),
            queue_depth,
            in_flight: AtomicU32::new(0),
            counters: Counters::default(),
            changes: AtomicU64::new(0),
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

    fn index(&self, sid: SecondaryId) -> Option<(usize, usize)> {
        let idx = sid.0.checked_sub(self.first)?;
        if idx >= self.len {
            return None;
        }
        Some(((idx / SLOT_CHUNK) as usize, (idx % SLOT_CHUNK) as usize))
    }

    /// The slot of `sid`, if its chunk exists.
    #[inline]
    pub(crate) fn slot(&self, sid: SecondaryId) -> Option<&Slot> {
        let (chunk, at) = self.index(sid)?;
        self.chunks.get(chunk)?.get()?.get(at)
    }

    /// The slot of `sid`, allocating its chunk. `None` when `sid` is outside
    /// the PE's range.
    fn slot_or_create(&self, sid: SecondaryId) -> Option<&Slot> {
        let (chunk, at) = self.index(sid)?;
        let chunk_len = (self.len - chunk as u64 * SLOT_CHUNK).min(SLOT_CHUNK) as usize;
        self.chunks
            .get(chunk)?
            .get_or_init(|| (0..chunk_len).map(|_| Slot::default()).collect())
            .get(at)
    }

    #[inline]
    pub(crate) fn word(&self, sid: SecondaryId) -> Option<Word> {
        self.slot(sid)
            .map(|s| Word::decode(s.word.load(Ordering::Acquire)))
    }

    /// Publishes `binding` at `sid` under its generation. Control plane only.
    pub(crate) fn publish(&self, sid: SecondaryId, binding: Arc<LiveBinding>) {
        let slot = self
            .slot_or_create(sid)
            .expect("the control plane only hands out ids inside the PE's range");
        let word = Word::encode(binding.generation, Some(binding.volume.key));
        slot.binding.store(Some(binding));
        slot.word.store(word, Ordering::Release);
        self.changes.fetch_add(1, Ordering::Release);
    }

    /// Replaces the binding at `sid` (same generation, new host set).
    pub(crate) fn replace(&self, sid: SecondaryId, binding: Arc<LiveBinding>) {
        if let Some(slot) = self.slot(sid) {
            debug_assert_eq!(
                Word::decode(slot.word.load(Ordering::Relaxed)).generation,
                binding.generation
            );
            slot.binding.store(Some(binding));
            self.changes.fetch_add(1, Ordering::Release);
        }
    }

    /// Empties the slot at `sid`, keeping its generation.
    pub(crate) fn retire(&self, sid: SecondaryId) {
        if let Some(slot) = self.slot(sid) {
            let old = Word::decode(slot.word.load(Ordering::Relaxed));
            slot.word
                .store(Word::encode(old.generation, None), Ordering::Release);
            slot.binding.store(None);
            self.changes.fetch_add(1, Ordering::Release);
        }
    }

    /// Sets an empty slot's generation (restoring a journal snapshot).
    pub(crate) fn restore_retired(&self, sid: SecondaryId, generation: Generation) {
        if let Some(slot) = self.slot_or_create(sid) {
            slot.word
                .store(Word::encode(generation, None), Ordering::Release);
        }
    }

    /// The generation the next binding at `sid` gets: one more than the
    /// slot's last, skipping 0 on wrap-around.
    pub(crate) fn next_generation(&self, sid: SecondaryId) -> Generation {
        let last = self.word(sid).map_or(0, |w| w.generation.0);
        Generation(last.checked_add(1).unwrap_or(1))
    }

    /// Bytes held by allocated slot chunks.
    pub(crate) fn slot_bytes(&self) -> usize {
        self.chunks
            .iter()
            .filter_map(OnceLock::get)
            .map(|c| c.len() * std::mem::size_of::<Slot>())
            .sum()
    }
}

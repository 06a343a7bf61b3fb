//! The ordering-relevant part of the slot protocol, generic over the word
//! atomic and the binding cell so that the loom test (`tests/loom.rs`, built
//! with `--cfg loom`) checks this very code with loom's atomics, while
//! [`PeTable`](super::table::PeTable) runs it with `AtomicU64` and
//! `ArcSwapOption` (monomorphised and inlined: resolve stays one acquire load).
//!
//! The protocol (writers are serialised by the control plane's lock):
//! - publish: store the binding into the cell, then the word (Release);
//! - retire: store the empty word keeping the generation (Release), then
//!   clear the cell;
//! - resolve: load the word (Acquire). A resolve that sees a bound word also
//!   sees the binding published with it (or a later cell value).
//!
//! `--cfg loom_weak` (test-only) weakens publish and resolve to Relaxed so
//! that the loom test can be seen to fail.
#![cfg_attr(not(loom), allow(unreachable_pub))]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arc_swap::ArcSwapOption;

use super::volume::LiveBinding;
use crate::model::{Generation, VvolKey};

/// Ordering of the word store that publishes or retires a slot.
#[cfg(not(loom_weak))]
pub const PUBLISH: Ordering = Ordering::Release;
/// Ordering of the word load in resolve.
#[cfg(not(loom_weak))]
pub const RESOLVE: Ordering = Ordering::Acquire;
/// Ordering of the word store that publishes or retires a slot (weakened).
#[cfg(loom_weak)]
pub const PUBLISH: Ordering = Ordering::Relaxed;
/// Ordering of the word load in resolve (weakened).
#[cfg(loom_weak)]
pub const RESOLVE: Ordering = Ordering::Relaxed;

const EMPTY_LOW: u64 = 0;

/// A slot's word: `generation << 32 | (key + 1)`, low half 0 when empty.
pub trait SlotWord {
    /// Loads the raw word.
    fn load_word(&self, order: Ordering) -> u64;
    /// Stores the raw word.
    fn store_word(&self, raw: u64, order: Ordering);
}

impl SlotWord for AtomicU64 {
    #[inline(always)]
    fn load_word(&self, order: Ordering) -> u64 {
        self.load(order)
    }

    #[inline(always)]
    fn store_word(&self, raw: u64, order: Ordering) {
        self.store(raw, order);
    }
}

/// A slot's binding cell (an `arc-swap` cell in the router): a store must
/// be a release and a load an acquire, as `arc-swap` guarantees.
pub trait SlotCell {
    /// What the cell holds.
    type Binding;
    /// Replaces the cell's content.
    fn store_binding(&self, binding: Option<Self::Binding>);
}

impl SlotCell for ArcSwapOption<LiveBinding> {
    type Binding = Arc<LiveBinding>;

    #[inline(always)]
    fn store_binding(&self, binding: Option<Arc<LiveBinding>>) {
        self.store(binding);
    }
}

/// What a slot word says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Word {
    /// The generation of the last binding published at the slot.
    pub generation: Generation,
    /// The vVol bound there; `None` when the slot is empty.
    pub key: Option<VvolKey>,
}

impl Word {
    /// Decodes a raw word.
    #[inline(always)]
    pub const fn decode(raw: u64) -> Self {
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

    /// Encodes a word.
    #[inline(always)]
    pub const fn encode(generation: Generation, key: Option<VvolKey>) -> u64 {
        let low = match key {
            Some(k) => k.0 as u64 + 1,
            None => EMPTY_LOW,
        };
        ((generation.0 as u64) << 32) | low
    }
}

/// Resolves a slot: one load of its word.
#[inline(always)]
pub fn resolve<W: SlotWord>(word: &W) -> Word {
    Word::decode(word.load_word(RESOLVE))
}

/// Publishes `binding` as `(generation, key)`: the cell first, then the word.
#[inline]
pub fn publish<W: SlotWord, C: SlotCell>(
    word: &W,
    cell: &C,
    generation: Generation,
    key: VvolKey,
    binding: C::Binding,
) {
    cell.store_binding(Some(binding));
    word.store_word(Word::encode(generation, Some(key)), PUBLISH);
}

/// Empties a slot, keeping its generation: the word first, then the cell.
#[inline]
pub fn retire<W: SlotWord, C: SlotCell>(word: &W, cell: &C) {
    // Writers are serialised, so a relaxed load sees the last word stored.
    let old = Word::decode(word.load_word(Ordering::Relaxed));
    word.store_word(Word::encode(old.generation, None), PUBLISH);
    cell.store_binding(None);
}

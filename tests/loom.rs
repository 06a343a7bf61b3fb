//! Memory-model check of the router's slot publish/retire protocol with loom.
//!
//! Runs the protocol code the router itself runs (`vvol::loom_slot`, generic
//! over the word atomic and the binding cell) with loom's atomics:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom
//! ```
//!
//! and shows that it can fail: with publish and resolve weakened to Relaxed
//!
//! ```text
//! RUSTFLAGS="--cfg loom --cfg loom_weak" LOOM_MAX_PREEMPTIONS=3 cargo test --release --test loom
//! ```
//!
//! loom finds a resolve that sees a bound word whose binding is not (yet)
//! in the cell, and the tests fail.
#![cfg(loom)]

use loom::sync::Arc;
use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use loom::thread;
use vvol::loom_slot::{self as slot, SlotCell, SlotWord, Word};
use vvol::{Generation, VvolKey};

/// The slot word on loom's atomic.
struct LoomWord(AtomicU64);

impl SlotWord for LoomWord {
    fn load_word(&self, order: Ordering) -> u64 {
        self.0.load(order)
    }

    fn store_word(&self, raw: u64, order: Ordering) {
        self.0.store(raw, order);
    }
}

/// The binding cell at the weakest ordering `arc-swap` promises (a store
/// releases, a load acquires). It holds the binding's own (generation, key)
/// encoded as a word; 0 is empty.
struct LoomCell(AtomicU64);

impl SlotCell for LoomCell {
    type Binding = u64;

    fn store_binding(&self, binding: Option<u64>) {
        self.0.store(binding.unwrap_or(0), Ordering::Release);
    }
}

impl LoomCell {
    /// What admission pins: the binding in the cell, if any.
    fn load(&self) -> Option<Word> {
        let raw = self.0.load(Ordering::Acquire);
        (raw != 0).then(|| Word::decode(raw))
    }
}

/// One slot plus the control plane's "retire of generation N completed"
/// mark, which a later reader acquires (any happens-before edge would do).
struct Slot {
    word: LoomWord,
    cell: LoomCell,
    retired: AtomicU32,
}

/// The rebind changes the key with the generation.
fn key_of(generation: Generation) -> VvolKey {
    VvolKey(100 + generation.0)
}

impl Slot {
    fn new() -> Self {
        Self {
            word: LoomWord(AtomicU64::new(0)),
            cell: LoomCell(AtomicU64::new(0)),
            retired: AtomicU32::new(0),
        }
    }

    fn bind(&self, generation: u32) {
        let generation = Generation(generation);
        let key = key_of(generation);
        let binding = Word::encode(generation, Some(key));
        slot::publish(&self.word, &self.cell, generation, key, binding);
    }

    fn unbind(&self) {
        let generation = slot::resolve(&self.word).generation;
        slot::retire(&self.word, &self.cell);
        self.retired.store(generation.0, Ordering::Release);
    }

    /// One resolve followed by an admission, as a host's I/O does them.
    fn resolve_and_admit(&self) {
        let retired = self.retired.load(Ordering::Acquire);
        let first = slot::resolve(&self.word);
        let Some(key) = first.key else {
            return;
        };
        assert_eq!(key, key_of(first.generation), "key/generation mismatch");
        assert!(
            first.generation.0 > retired,
            "resolved generation {} after its retire completed",
            first.generation.0
        );
        let pinned = self.cell.load();
        let again = slot::resolve(&self.word);
        if again == first {
            // The word did not move: the cell must hold its binding.
            assert_eq!(
                pinned,
                Some(first),
                "half-published slot: word {first:?}, binding cell {pinned:?}"
            );
        }
        if let Some(binding) = pinned {
            assert!(
                binding.generation >= first.generation,
                "binding cell holds generation {} older than the word's {}",
                binding.generation.0,
                first.generation.0
            );
            if binding.generation == first.generation {
                assert_eq!(binding.key, first.key, "key/generation mismatch");
            }
        }
    }
}

/// Bind, unbind, rebind (new generation, new key) and unbind on one thread.
fn control_plane(slot: &Slot) {
    slot.bind(1);
    slot.unbind();
    slot.bind(2);
    slot.unbind();
}

#[test]
fn bind_unbind_rebind_against_one_reader_resolving_twice() {
    loom::model(|| {
        let slot = Arc::new(Slot::new());
        let writer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || control_plane(&slot))
        };
        slot.resolve_and_admit();
        slot.resolve_and_admit();
        writer.join().unwrap();
        // After the last retire, nothing resolves.
        assert_eq!(slot::resolve(&slot.word).key, None);
    });
}

#[test]
fn bind_unbind_rebind_against_two_readers() {
    loom::model(|| {
        let slot = Arc::new(Slot::new());
        let writer = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || {
                slot.bind(1);
                slot.unbind();
                slot.bind(2);
            })
        };
        let reader = {
            let slot = Arc::clone(&slot);
            thread::spawn(move || slot.resolve_and_admit())
        };
        slot.resolve_and_admit();
        reader.join().unwrap();
        writer.join().unwrap();
        let last = slot::resolve(&slot.word);
        assert_eq!(
            last,
            Word::decode(Word::encode(Generation(2), Some(key_of(Generation(2)))))
        );
        assert_eq!(slot.cell.load(), Some(last));
    });
}

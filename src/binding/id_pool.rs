//! FIFO id allocation: least recently freed first, never-used ids before any.

use std::collections::VecDeque;

/// Hands out ids from `first..=last`. Fresh ids come first in order; after
/// the range is used up, freed ids are reused oldest-freed first, so an id is
/// reused as late as possible. Behaves like a FIFO free list that starts
/// holding the whole range, in O(freed) memory.
#[derive(Clone, Debug)]
pub(crate) struct IdPool {
    next_fresh: u64,
    last: u64,
    fresh_left: bool,
    freed: VecDeque<u64>,
}

impl IdPool {
    pub(crate) fn new(first: u64, last: u64) -> Self {
        debug_assert!(first <= last);
        Self {
            next_fresh: first,
            last,
            fresh_left: true,
            freed: VecDeque::new(),
        }
    }

    pub(crate) fn allocate(&mut self) -> Option<u64> {
        if self.fresh_left {
            let id = self.next_fresh;
            if id == self.last {
                self.fresh_left = false;
            } else {
                self.next_fresh += 1;
            }
            return Some(id);
        }
        self.freed.pop_front()
    }

    pub(crate) fn free(&mut self, id: u64) {
        self.freed.push_back(id);
    }

    /// The pool's parts, for journal snapshots.
    pub(crate) fn parts(&self) -> (u64, u64, bool, &VecDeque<u64>) {
        (self.next_fresh, self.last, self.fresh_left, &self.freed)
    }

    /// A pool from [`parts`](Self::parts).
    pub(crate) fn from_parts(
        next_fresh: u64,
        last: u64,
        fresh_left: bool,
        freed: Vec<u64>,
    ) -> Self {
        Self {
            next_fresh,
            last,
            fresh_left,
            freed: freed.into(),
        }
    }

    pub(crate) fn is_exhausted(&self) -> bool {
        !self.fresh_left && self.freed.is_empty()
    }
}

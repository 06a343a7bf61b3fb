//! FIFO id allocation: least recently freed first, never-used ids before any.

use std::collections::VecDeque;

/// Hands out ids from `first..=last`. Fresh ids come first in order; after
/// the range is used up, freed ids are reused oldest-freed first, so an id is
/// reused as late as possible. Each freed id keeps a tag (the generation its
/// slot last had). O(freed) memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct IdPool {
    next_fresh: u64,
    last: u64,
    fresh_left: bool,
    freed: VecDeque<(u64, u32)>,
    /// The tag of a fresh id: 0, or in a per-host space re-created after
    /// its host's last binding went, the newest generation the PE issued in
    /// any host space before, so its slots never repeat a generation.
    fresh_tag: u32,
}

impl IdPool {
    pub(crate) fn new(first: u64, last: u64) -> Self {
        debug_assert!(first <= last);
        Self {
            next_fresh: first,
            last,
            fresh_left: true,
            freed: VecDeque::new(),
            fresh_tag: 0,
        }
    }

    /// The same pool whose fresh ids carry `tag` (see `fresh_tag`).
    pub(crate) fn with_fresh_tag(mut self, tag: u32) -> Self {
        self.fresh_tag = tag;
        self
    }

    /// The tag fresh ids carry.
    pub(crate) fn fresh_tag(&self) -> u32 {
        self.fresh_tag
    }

    /// The newest tag in the pool: the largest freed tag or the fresh tag.
    pub(crate) fn newest_tag(&self) -> u32 {
        self.freed
            .iter()
            .map(|(_, t)| *t)
            .fold(self.fresh_tag, u32::max)
    }

    /// The `n`th id (from 0) the pool would hand out next, with its tag
    /// (the fresh tag for a fresh id), without taking it.
    pub(crate) fn peek_nth(&self, n: u64) -> Option<(u64, u32)> {
        let fresh = if self.fresh_left {
            self.last - self.next_fresh + 1
        } else {
            0
        };
        if n < fresh {
            return Some((self.next_fresh + n, self.fresh_tag));
        }
        let at = usize::try_from(n - fresh).ok()?;
        self.freed.get(at).copied()
    }

    /// Takes the next id with its tag.
    pub(crate) fn allocate(&mut self) -> Option<(u64, u32)> {
        if self.fresh_left {
            let id = self.next_fresh;
            if id == self.last {
                self.fresh_left = false;
            } else {
                self.next_fresh += 1;
            }
            return Some((id, self.fresh_tag));
        }
        self.freed.pop_front()
    }

    pub(crate) fn free(&mut self, id: u64, tag: u32) {
        self.freed.push_back((id, tag));
    }

    /// Free ids left.
    pub(crate) fn available(&self) -> u64 {
        let fresh = if self.fresh_left {
            self.last - self.next_fresh + 1
        } else {
            0
        };
        fresh + self.freed.len() as u64
    }

    /// The pool's parts, for snapshots.
    pub(crate) fn parts(&self) -> (u64, u64, bool, Vec<(u64, u32)>) {
        (
            self.next_fresh,
            self.last,
            self.fresh_left,
            self.freed.iter().copied().collect(),
        )
    }

    /// A pool of `first..=last` from [`parts`](Self::parts), checked: the
    /// fresh cursor inside the range, every freed id below it (or any id
    /// once fresh ids ran out), inside the range, and freed once.
    pub(crate) fn from_parts(
        first: u64,
        last: u64,
        next_fresh: u64,
        fresh_left: bool,
        freed: Vec<(u64, u32)>,
    ) -> Result<Self, &'static str> {
        if first > last || next_fresh < first || next_fresh > last {
            return Err("id pool cursor outside its range");
        }
        let mut seen = std::collections::HashSet::with_capacity(freed.len());
        for (id, _) in &freed {
            if *id < first || *id > last || (fresh_left && *id >= next_fresh) {
                return Err("freed id outside the used range");
            }
            if !seen.insert(*id) {
                return Err("id freed twice");
            }
        }
        Ok(Self {
            next_fresh,
            last,
            fresh_left,
            freed: freed.into(),
            fresh_tag: 0,
        })
    }

    /// Takes `id` wherever it is (the next id in the common case): a
    /// record written under other limits may name another free id. Fresh
    /// ids skipped over become freed ones. `false` when `id` is taken or
    /// outside the range.
    pub(crate) fn take(&mut self, id: u64) -> bool {
        if self.fresh_left && id >= self.next_fresh && id <= self.last {
            for skipped in self.next_fresh..id {
                self.freed.push_back((skipped, self.fresh_tag));
            }
            if id == self.last {
                self.fresh_left = false;
            } else {
                self.next_fresh = id + 1;
            }
            return true;
        }
        match self.freed.iter().position(|(f, _)| *f == id) {
            Some(at) => {
                self.freed.remove(at);
                true
            }
            None => false,
        }
    }

    /// The same pool over `first..=new_last`: fresh ids past the old end
    /// appear, freed or fresh ids past the new end go.
    pub(crate) fn resized(mut self, new_last: u64) -> Self {
        if new_last > self.last {
            if !self.fresh_left {
                self.next_fresh = self.last + 1;
                self.fresh_left = true;
            }
        } else if self.fresh_left && self.next_fresh > new_last {
            self.fresh_left = false;
        }
        self.freed.retain(|(id, _)| *id <= new_last);
        self.last = new_last;
        self
    }

    /// Whether `id` is inside the range and not handed out.
    pub(crate) fn is_free(&self, id: u64) -> bool {
        id <= self.last && !self.is_taken(id)
    }

    /// Whether `id` was ever handed out (in range, not fresh); O(1).
    pub(crate) fn is_issued(&self, id: u64) -> bool {
        id <= self.last && !(self.fresh_left && id >= self.next_fresh)
    }

    /// Whether `id` is handed out (not fresh, not freed). O(freed).
    pub(crate) fn is_taken(&self, id: u64) -> bool {
        let fresh = self.fresh_left && id >= self.next_fresh && id <= self.last;
        !fresh && !self.freed.iter().any(|(f, _)| *f == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peek_matches_allocate_and_freed_ids_keep_their_tag() {
        let mut p = IdPool::new(1, 3);
        assert_eq!(p.peek_nth(2), Some((3, 0)));
        assert_eq!(p.allocate(), Some((1, 0)));
        assert_eq!(p.allocate(), Some((2, 0)));
        p.free(1, 7);
        assert_eq!(p.peek_nth(0), Some((3, 0)));
        assert_eq!(p.peek_nth(1), Some((1, 7)));
        assert_eq!(p.peek_nth(2), None);
        assert_eq!(p.available(), 2);
        assert_eq!(p.allocate(), Some((3, 0)));
        assert_eq!(p.allocate(), Some((1, 7)));
        assert_eq!(p.available(), 0);
        assert!(p.is_taken(2));
    }

    #[test]
    fn from_parts_refuses_inconsistent_pools() {
        assert!(IdPool::from_parts(1, 3, 4, true, vec![]).is_err());
        assert!(IdPool::from_parts(1, 3, 2, true, vec![(2, 0)]).is_err());
        assert!(IdPool::from_parts(1, 3, 3, true, vec![(1, 0), (1, 0)]).is_err());
        assert!(IdPool::from_parts(1, 3, 3, false, vec![(3, 1)]).is_ok());
    }
}

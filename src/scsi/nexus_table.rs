//! The I_T nexuses a target keeps state for, in shards so that a command
//! takes one shard's read lock (shared, never a global mutex) to find its
//! nexus; only a nexus's first command takes a write lock.

use rustc_hash::FxHashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::RwLock;

use super::limits::MAX_NEXUSES;
use super::target::ItNexus;
use super::unit_attention::NexusState;

/// Shards of the nexus table.
const SHARDS: usize = 16;

/// One shard: the nexuses whose hash falls in it.
type Shard = RwLock<FxHashMap<ItNexus, Arc<NexusState>>>;

#[derive(Debug)]
pub(crate) struct NexusTable {
    shards: Box<[Shard]>,
    len: AtomicUsize,
}

impl Default for NexusTable {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| RwLock::new(FxHashMap::default()))
                .collect(),
            len: AtomicUsize::new(0),
        }
    }
}

impl NexusTable {
    fn shard(&self, nexus: &ItNexus) -> &Shard {
        let mix = u64::from(nexus.host.0)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(u64::from(nexus.initiator.0).wrapping_mul(0xC2B2_AE3D_27D4_EB4F))
            .wrapping_add(u64::from(nexus.relative_target_port));
        &self.shards[(mix >> 40) as usize % SHARDS]
    }

    /// The state of `nexus`, made if new; past [`MAX_NEXUSES`] a transient
    /// state that is not kept.
    pub(crate) fn get(&self, nexus: ItNexus) -> Arc<NexusState> {
        let shard = self.shard(&nexus);
        if let Some(state) = shard.read().get(&nexus) {
            return Arc::clone(state);
        }
        let mut map = shard.write();
        if let Some(state) = map.get(&nexus) {
            return Arc::clone(state);
        }
        // Reserve a place under the limit; give it back if it is full.
        if self.len.fetch_add(1, Ordering::AcqRel) >= MAX_NEXUSES {
            self.len.fetch_sub(1, Ordering::AcqRel);
            return Arc::new(NexusState::transient());
        }
        Arc::clone(
            map.entry(nexus)
                .or_insert_with(|| Arc::new(NexusState::new())),
        )
    }
}

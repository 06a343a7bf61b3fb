//! Routing-table memory per binding at 1M bindings, measured with a counting
//! global allocator (`stats_alloc`), not estimated.
//!
//! Routing table = slot chunks + the per-binding record the router keeps
//! (`LiveBinding`). Per-PE counters and vVol metadata (`VolumeCore`,
//! backends) are excluded. Steps, each a difference of live heap bytes:
//!
//! 1. bind all `n` vVols (batches of 16): everything a bind allocates,
//!    control-plane bookkeeping included (reported for context);
//! 2. unbind all, then bind all again: the control plane's maps keep their
//!    capacity and the ids are reused, so the difference is the binding
//!    records alone;
//! 3. unbind all, keep the router and drop the control plane: what is left
//!    is the router's tables; minus the same for a router whose PEs never
//!    bound anything, that is the slot chunks.
//!
//! Run with `cargo bench --bench memory`; prints `memory.<name> <value>`
//! lines that `scripts/bench-report` reads. `BENCH_MEMORY_BINDINGS` changes n.

mod fixture;

use std::alloc::System;

use fixture::{BATCH, IDS_PER_PE, MIB, bind_all, sized_plane};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use vvol::{BindHandle, ControlPlane, HostId, UnbindContext, VvolId, VvolSpec, VvolType};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Live heap bytes since `region` started.
fn live(region: &Region<'_, System>) -> i64 {
    let s = region.change();
    // stats_alloc already adds a realloc's growth to `bytes_allocated` (and its
    // shrink to `bytes_deallocated`); `bytes_reallocated` repeats it.
    s.bytes_allocated as i64 - s.bytes_deallocated as i64
}

/// The bench fixture's sized plane, as (plane, container, host).
fn plane(total: u64) -> (ControlPlane, vvol::ContainerId, HostId) {
    let sized = sized_plane(total);
    debug_assert_eq!(sized.total, total);
    (sized.plane, sized.container, sized.host)
}

fn unbind_all(plane: &ControlPlane, host: HostId, handles: &[BindHandle]) {
    for h in handles {
        plane.unbind(host, *h, UnbindContext::Normal).unwrap();
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is accepted.
    let wanted: u64 = std::env::var("BENCH_MEMORY_BINDINGS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let pe_count = wanted.div_ceil(IDS_PER_PE).max(1);
    let n = pe_count * (wanted.div_ceil(pe_count));

    let region = Region::new(GLOBAL);

    // The router of the same PEs without any binding.
    let empty_router = {
        let before = live(&region);
        let (p, _, _) = plane(n);
        let router = p.router();
        drop(p);
        let bytes = live(&region) - before;
        drop(router);
        bytes
    };

    let (p, container, host) = plane(n);
    let vvols: Vec<VvolId> = (0..n)
        .map(|_| {
            p.create_vvol(container, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    let mut handles: Vec<BindHandle> = Vec::with_capacity(n as usize);
    let l1 = live(&region);
    let started = std::time::Instant::now();
    handles.extend(bind_all(&p, host, &vvols));
    let bind_secs = started.elapsed().as_secs_f64();
    let l2 = live(&region);
    unbind_all(&p, host, &handles);
    handles.clear();
    let l3 = live(&region);
    handles.extend(bind_all(&p, host, &vvols));
    let l4 = live(&region);
    unbind_all(&p, host, &handles);
    drop(handles);
    let before_drop = live(&region);
    let router = p.router();
    let estimate = router.slot_bytes();
    drop(p);
    drop(vvols);
    let router_left = live(&region);
    drop(router);

    let n_f = n as f64;
    let slots = (router_left - empty_router) as f64;
    let records = (l4 - l3) as f64;
    println!("memory.bindings {n}");
    println!("memory.batch {BATCH}");
    println!(
        "memory.bind_total_bytes_per_binding {:.2}",
        (l2 - l1) as f64 / n_f
    );
    println!("memory.record_bytes_per_binding {:.2}", records / n_f);
    println!("memory.slot_bytes_per_binding {:.2}", slots / n_f);
    println!(
        "memory.routing_bytes_per_binding {:.2}",
        (slots + records) / n_f
    );
    println!("memory.slot_bytes_reported_by_router {estimate}");
    println!(
        "memory.setup_bind_ns_per_binding {:.0}",
        bind_secs * 1e9 / n_f
    );
    println!("memory.heap_bytes_before_drop {before_drop}");
}

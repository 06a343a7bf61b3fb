//! Criterion benches of the data plane against the structures a user would
//! otherwise pick, on identical data:
//!
//! - `resolve_{1k,100k,1m}/{hit,miss,stale}/<structure>`: one thread, random
//!   keys. Structures: the router, a dense `Vec<Vec<u64>>` (the physical
//!   limit), `parking_lot::RwLock<FxHashMap>`, `DashMap` (Fx), `papaya`
//!   (Fx; `pin()` per lookup, and with one guard held for the whole batch).
//! - `resolve_mt_{1k,1m}/{readers2,churn}/<structure>`: two reader threads,
//!   or one reader while one thread binds and unbinds; per-lookup cost of a
//!   reader.
//! - `io_{4k,64k}/{read,write}_{direct,routed}`: routed I/O against the same
//!   call on the `MemoryBackend` directly, and the direct read plus 8
//!   uncontended atomic read-modify-writes (the routed path's count).
//! - `bind_storm/{bind,unbind}`: 10,000 vVols bound once each by one of 8
//!   hosts in batches of 16, then all unbound; `bind_storm_journal/...` the
//!   same with the durable journal on (a file under the target dir, synced
//!   before every acknowledgement).
//!
//! Every structure answers the same question: "which vVol is bound at (PE,
//! secondary id), if its generation is the handle's?" Map values are the
//! packed `generation << 32 | vvol key`, copied out.
//!
//! Run with `cargo bench --bench router`; `scripts/bench-report` runs a short
//! pass and writes BENCHMARKS.md. `BENCH_SIZES=1k,100k` limits the sizes.

mod fixture;

use std::hint::black_box;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dashmap::DashMap;
use fixture::{BATCH, Fixture, MIB, Rng, bind_all, fixture};
use parking_lot::RwLock;
use rustc_hash::{FxBuildHasher, FxHashMap};
use vvol::{
    ArraySpec, BindContext, BindHandle, ContainerSpec, ControlPlane, HostId, JournalOptions,
    Limits, Naa, PeSpec, Protocol, Router, UnbindContext, VvolId, VvolSpec, VvolType,
};

/// Lookups per criterion iteration.
const LOOKUPS: usize = 1_024;
/// Probes generated per kind and size (walked in blocks of `LOOKUPS`), so a
/// large table is touched all over, not in a cache-resident subset.
const PROBES: usize = 1 << 18;

type Key = (u32, u64);

/// One lookup: the handle's key and generation.
#[derive(Clone, Copy, Debug)]
struct Probe {
    pe: u32,
    sid: u64,
    generation: u32,
}

impl From<BindHandle> for Probe {
    fn from(h: BindHandle) -> Self {
        Self {
            pe: h.pe.get(),
            sid: h.secondary_id.get(),
            generation: h.generation.get(),
        }
    }
}

const fn pack(generation: u32, key: u32) -> u64 {
    ((generation as u64) << 32) | key as u64
}

/// The vVol key when the packed value carries the probe's generation.
#[inline]
fn check(value: Option<u64>, p: &Probe) -> Option<u32> {
    value
        .filter(|v| (v >> 32) as u32 == p.generation)
        .map(|v| v as u32)
}

/// The same bindings in every structure.
struct Maps {
    dense: Vec<Vec<u64>>,
    rwlock: RwLock<FxHashMap<Key, u64>>,
    dash: DashMap<Key, u64, FxBuildHasher>,
    papaya: papaya::HashMap<Key, u64, FxBuildHasher>,
}

impl Maps {
    fn new(f: &Fixture) -> Self {
        let router = f.plane.router();
        let mut entries = Vec::with_capacity(f.handles.len());
        for h in &f.handles {
            let r = router.resolve(h.pe, h.secondary_id).unwrap();
            entries.push((
                (h.pe.get(), h.secondary_id.get()),
                pack(r.generation.get(), r.vvol.get()),
            ));
        }
        let max_pe = f.pes.iter().map(|p| p.get()).max().unwrap_or(0) as usize;
        // Dense: [pe][sid - first], 0 = empty (a bound generation is >= 1).
        let mut dense = vec![Vec::new(); max_pe + 1];
        for pe in &f.pes {
            dense[pe.get() as usize] = vec![0u64; f.per_pe as usize];
        }
        let mut fx = FxHashMap::default();
        let dash = DashMap::with_hasher(FxBuildHasher);
        let papaya = papaya::HashMap::builder()
            .hasher(FxBuildHasher)
            .capacity(entries.len())
            .build();
        {
            let pin = papaya.pin();
            for &(k, v) in &entries {
                dense[k.0 as usize][(k.1 - f.first_id) as usize] = v;
                fx.insert(k, v);
                dash.insert(k, v);
                pin.insert(k, v);
            }
        }
        Self {
            dense,
            rwlock: RwLock::new(fx),
            dash,
            papaya,
        }
    }
}

/// How each structure answers one probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Structure {
    Router,
    Dense,
    RwLock,
    DashMap,
    Papaya,
    PapayaGuard,
}

impl Structure {
    const ALL: [Self; 6] = [
        Self::Router,
        Self::Dense,
        Self::RwLock,
        Self::DashMap,
        Self::Papaya,
        Self::PapayaGuard,
    ];

    const fn name(self) -> &'static str {
        match self {
            Self::Router => "router",
            Self::Dense => "dense_vec",
            Self::RwLock => "rwlock_fxhashmap",
            Self::DashMap => "dashmap",
            Self::Papaya => "papaya",
            Self::PapayaGuard => "papaya_held_guard",
        }
    }
}

/// Runs `probes` through `s`, returning how many resolved (kept alive by the
/// caller through `black_box`).
#[inline(never)]
fn run(s: Structure, router: &Router, m: &Maps, first_id: u64, probes: &[Probe]) -> usize {
    let mut found = 0usize;
    match s {
        Structure::Router => {
            for p in probes {
                let r = router.resolve(vvol::PeId(p.pe), vvol::SecondaryId(p.sid));
                let hit = r.filter(|r| r.generation.get() == p.generation);
                found += usize::from(black_box(hit.map(|r| r.vvol)).is_some());
            }
        }
        Structure::Dense => {
            for p in probes {
                let v = m
                    .dense
                    .get(p.pe as usize)
                    .and_then(|t| t.get(p.sid.wrapping_sub(first_id) as usize))
                    .copied()
                    .filter(|&v| v != 0);
                found += usize::from(black_box(check(v, p)).is_some());
            }
        }
        Structure::RwLock => {
            for p in probes {
                let v = m.rwlock.read().get(&(p.pe, p.sid)).copied();
                found += usize::from(black_box(check(v, p)).is_some());
            }
        }
        Structure::DashMap => {
            for p in probes {
                let v = m.dash.get(&(p.pe, p.sid)).map(|r| *r);
                found += usize::from(black_box(check(v, p)).is_some());
            }
        }
        Structure::Papaya => {
            for p in probes {
                let v = m.papaya.pin().get(&(p.pe, p.sid)).copied();
                found += usize::from(black_box(check(v, p)).is_some());
            }
        }
        Structure::PapayaGuard => {
            let pin = m.papaya.pin();
            for p in probes {
                let v = pin.get(&(p.pe, p.sid)).copied();
                found += usize::from(black_box(check(v, p)).is_some());
            }
        }
    }
    found
}

/// Probe sets over a fixture: hits, misses (free ids inside the PEs'
/// ranges, and ids of PEs' unused tail), stale (old generations).
struct Probes {
    hit: Vec<Probe>,
    miss: Vec<Probe>,
    stale: Vec<Probe>,
}

fn probes(f: &Fixture) -> Probes {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let hit = (0..PROBES)
        .map(|_| Probe::from(f.handles[rng.below(f.handles.len())]))
        .collect();
    // Misses: ids just past a PE's range, and bound ids asked of a PE that
    // does not exist, the way a stray command would.
    let unknown_pe = f.pes.iter().map(|p| p.get()).max().unwrap_or(0) + 1;
    let miss = (0..PROBES)
        .map(|_| {
            let pe = f.pes[rng.below(f.pes.len())].get();
            if rng.next().is_multiple_of(2) {
                Probe {
                    pe,
                    sid: f.first_id + f.per_pe + rng.below(1024) as u64,
                    generation: 1,
                }
            } else {
                Probe {
                    pe: unknown_pe,
                    sid: f.first_id + rng.below(f.per_pe as usize) as u64,
                    generation: 1,
                }
            }
        })
        .collect();
    let stale = (0..PROBES)
        .map(|_| Probe::from(f.stale[rng.below(f.stale.len())]))
        .collect();
    Probes { hit, miss, stale }
}

fn sizes() -> Vec<(&'static str, usize)> {
    let all = [("1k", 1_000), ("100k", 100_000), ("1m", 1_000_000)];
    let wanted = std::env::var("BENCH_SIZES").unwrap_or_default();
    all.into_iter()
        .filter(|(name, _)| wanted.is_empty() || wanted.split(',').any(|w| w == *name))
        .collect()
}

fn resolve(c: &mut Criterion) {
    for (label, n) in sizes() {
        let started = Instant::now();
        let f = fixture(n);
        let built = started.elapsed();
        let maps = Maps::new(&f);
        eprintln!(
            "fixture {label}: {} bindings on {} PEs built through the API in {:.2?} \
             ({:.0} ns per create+bind)",
            f.handles.len(),
            f.pes.len(),
            built,
            built.as_nanos() as f64 / f.handles.len() as f64
        );
        let router = f.plane.router();
        let p = probes(&f);
        // One untimed pass of every probe set through every structure, so
        // that no structure is measured first on cold pages.
        for set in [&p.hit, &p.miss, &p.stale] {
            for s in Structure::ALL {
                black_box(run(s, &router, &maps, f.first_id, set));
            }
        }
        let mut g = c.benchmark_group(format!("resolve_{label}"));
        g.throughput(Throughput::Elements(LOOKUPS as u64));
        for (kind, set) in [("hit", &p.hit), ("miss", &p.miss), ("stale", &p.stale)] {
            for s in Structure::ALL {
                let mut at = 0;
                g.bench_function(format!("{kind}/{}", s.name()), |b| {
                    b.iter(|| {
                        let block = &set[at..at + LOOKUPS];
                        at = (at + LOOKUPS) % set.len();
                        run(s, &router, &maps, f.first_id, block)
                    })
                });
            }
        }
        g.finish();
        resolve_mt(c, label, &f, &maps, &p.hit);
    }
}

/// Two readers, or one reader and one binder; per-lookup time of the
/// slower reader.
fn resolve_mt(c: &mut Criterion, label: &str, f: &Fixture, maps: &Maps, hits: &[Probe]) {
    if label == "100k" {
        return;
    }
    let router = f.plane.router();
    // A writable dense table for the churn case (the writer stores words).
    let dense_atomic: Vec<Vec<AtomicU64>> = maps
        .dense
        .iter()
        .map(|t| t.iter().map(|&v| AtomicU64::new(v)).collect())
        .collect();
    // The churned handles, carried from one sample to the next.
    let churned = parking_lot::Mutex::new(f.handles[..f.handles.len().min(64)].to_vec());
    let mut g = c.benchmark_group(format!("resolve_mt_{label}"));
    g.throughput(Throughput::Elements(LOOKUPS as u64));
    for s in Structure::ALL {
        g.bench_function(format!("readers2/{}", s.name()), |b| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(2);
                std::thread::scope(|scope| {
                    let workers: Vec<_> = (0..2)
                        .map(|t| {
                            let barrier = &barrier;
                            let router = &router;
                            scope.spawn(move || {
                                barrier.wait();
                                let start = Instant::now();
                                let mut at = t * (hits.len() / 2);
                                for _ in 0..iters {
                                    let block = &hits[at..at + LOOKUPS];
                                    at = (at + LOOKUPS) % hits.len();
                                    black_box(run(s, router, maps, f.first_id, block));
                                }
                                start.elapsed()
                            })
                        })
                        .collect();
                    workers
                        .into_iter()
                        .map(|w| w.join().unwrap())
                        .max()
                        .unwrap_or_default()
                })
            })
        });
    }
    for s in Structure::ALL {
        if s == Structure::PapayaGuard {
            continue;
        }
        g.bench_function(format!("churn/{}", s.name()), |b| {
            b.iter_custom(|iters| {
                let stop = AtomicBool::new(false);
                std::thread::scope(|scope| {
                    let stop = &stop;
                    let dense_atomic = &dense_atomic;
                    let churned = &churned;
                    scope.spawn(move || churn(s, f, maps, dense_atomic, &mut churned.lock(), stop));
                    let start = Instant::now();
                    let mut at = 0;
                    for _ in 0..iters {
                        let block = &hits[at..at + LOOKUPS];
                        at = (at + LOOKUPS) % hits.len();
                        if s == Structure::Dense {
                            black_box(run_dense_atomic(dense_atomic, f.first_id, block));
                        } else {
                            black_box(run(s, &router, maps, f.first_id, block));
                        }
                    }
                    let elapsed = start.elapsed();
                    stop.store(true, Ordering::Relaxed);
                    elapsed
                })
            })
        });
    }
    g.finish();
}

fn run_dense_atomic(t: &[Vec<AtomicU64>], first_id: u64, probes: &[Probe]) -> usize {
    let mut found = 0usize;
    for p in probes {
        let v = t
            .get(p.pe as usize)
            .and_then(|t| t.get(p.sid.wrapping_sub(first_id) as usize))
            .map(|w| w.load(Ordering::Acquire))
            .filter(|&v| v != 0);
        found += usize::from(black_box(check(v, p)).is_some());
    }
    found
}

/// About one unbind and one bind every 10 µs until `stop`, on the first 64
/// bindings: through the control plane for the router, as remove + insert
/// with the next generation for the maps, as stores for the dense table.
fn churn(
    s: Structure,
    f: &Fixture,
    maps: &Maps,
    dense_atomic: &[Vec<AtomicU64>],
    handles: &mut [BindHandle],
    stop: &AtomicBool,
) {
    let n = handles.len();
    let mut i = 0;
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if Instant::now() < next {
            std::hint::spin_loop();
            continue;
        }
        next += Duration::from_micros(10);
        let h = handles[i];
        let key = (h.pe.get(), h.secondary_id.get());
        match s {
            Structure::Router => {
                f.plane.unbind(f.host, h, UnbindContext::Normal).unwrap();
                handles[i] = f
                    .plane
                    .bind(f.host, &f.vvols[i..=i], BindContext::Normal)
                    .unwrap()
                    .remove(0)
                    .unwrap();
            }
            Structure::Dense => {
                let w = &dense_atomic[key.0 as usize][(key.1 - f.first_id) as usize];
                let old = w.swap(0, Ordering::AcqRel);
                w.store(old + (1 << 32), Ordering::Release);
            }
            Structure::RwLock => {
                let mut map = maps.rwlock.write();
                let old = map.remove(&key).unwrap_or(1 << 32);
                map.insert(key, old + (1 << 32));
            }
            Structure::DashMap => {
                let old = maps.dash.remove(&key).map_or(1 << 32, |(_, v)| v);
                maps.dash.insert(key, old + (1 << 32));
            }
            Structure::Papaya | Structure::PapayaGuard => {
                let pin = maps.papaya.pin();
                let old = pin.remove(&key).copied().unwrap_or(1 << 32);
                pin.insert(key, old + (1 << 32));
            }
        }
        i = (i + 1) % n;
    }
    // Leave the maps as they were (generations are only compared for equality
    // with the probes; the churned 64 keys may now miss in every structure).
}

/// A plane with one PE and `n` bound vVols for one host (I/O benches).
fn small_plane(n: usize) -> (ControlPlane, HostId, Vec<BindHandle>, Vec<VvolId>) {
    let plane = ControlPlane::new(Limits::default());
    let a = plane.add_array(ArraySpec::new("bench", 0x1a2b)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, 1 << 50))
        .unwrap();
    let naa = Naa::from_parts(0x1a2b, 1, 1).unwrap();
    let pe = plane.add_pe(a, PeSpec::scsi(naa, 1)).unwrap();
    let host = plane.add_host("h").unwrap();
    plane.map_pe(host, pe).unwrap();
    plane.set_pe_context(host, &[pe]).unwrap();
    let vvols: Vec<_> = (0..n)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    let handles = bind_all(&plane, host, &vvols);
    (plane, host, handles, vvols)
}

fn io(c: &mut Criterion) {
    let (plane, host, handles, vvols) = small_plane(16);
    let router = plane.router();
    let handle = handles[3];
    let backend = plane.backend(vvols[3]).unwrap();
    for (label, size) in [("4k", 4096usize), ("64k", 65536)] {
        let data = vec![0x5Au8; size];
        let mut buf = vec![0u8; size];
        router.write(host, handle, 0, &data, false).unwrap();
        let mut g = c.benchmark_group(format!("io_{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_function("read_direct", |b| {
            b.iter(|| backend.read_at(black_box(0), &mut buf).unwrap())
        });
        g.bench_function("read_routed", |b| {
            b.iter(|| {
                router
                    .read(host, black_box(handle), black_box(0), &mut buf)
                    .unwrap()
            })
        });
        // Calibration: the direct read plus 8 uncontended atomic RMWs on
        // separate cache lines, the count routed I/O does (queue in and out,
        // arc-swap pin and unpin, 2 PE and 2 vVol counters).
        let rmw: Vec<Padded> = (0..8).map(|_| Padded::default()).collect();
        g.bench_function("read_direct_plus_8_rmw", |b| {
            b.iter(|| {
                backend.read_at(black_box(0), &mut buf).unwrap();
                for a in &rmw {
                    a.0.fetch_add(1, Ordering::AcqRel);
                }
            })
        });
        g.bench_function("write_direct", |b| {
            b.iter(|| backend.write_at(black_box(0), &data, false).unwrap())
        });
        g.bench_function("write_routed", |b| {
            b.iter(|| {
                router
                    .write(host, black_box(handle), black_box(0), &data, false)
                    .unwrap()
            })
        });
        g.finish();
    }
}

/// An atomic alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// Vvols and hosts of the bind storm.
const STORM_VVOLS: usize = 10_000;
const STORM_HOSTS: usize = 8;

fn bind_storm(c: &mut Criterion) {
    storm_group(c, "bind_storm", ControlPlane::new(Limits::default()));
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let durable = ControlPlane::open_durable(
        dir.path().join("storm.journal"),
        Limits::default(),
        JournalOptions::default(),
    )
    .unwrap();
    storm_group(c, "bind_storm_journal", durable);
}

/// The bind storm on `plane`, as criterion group `name`.
fn storm_group(c: &mut Criterion, name: &str, plane: ControlPlane) {
    let a = plane.add_array(ArraySpec::new("storm", 0x1a2b)).unwrap();
    let cont = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, 1 << 50))
        .unwrap();
    let pes: Vec<_> = (0..4)
        .map(|i| {
            let naa = Naa::from_parts(0x1a2b, 1, i + 1).unwrap();
            plane.add_pe(a, PeSpec::scsi(naa, i as u16 + 1)).unwrap()
        })
        .collect();
    let hosts: Vec<HostId> = (0..STORM_HOSTS)
        .map(|i| {
            let h = plane.add_host(&format!("esx{i}")).unwrap();
            for pe in pes.iter() {
                plane.map_pe(h, *pe).unwrap();
            }
            plane.set_pe_context(h, &pes).unwrap();
            h
        })
        .collect();
    let vvols: Vec<VvolId> = (0..STORM_VVOLS)
        .map(|_| {
            plane
                .create_vvol(cont, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    // Batch j (16 vVols) is bound by host j % 8.
    let batches: Vec<(HostId, &[VvolId])> = vvols
        .chunks(BATCH)
        .enumerate()
        .map(|(j, b)| (hosts[j % STORM_HOSTS], b))
        .collect();
    let storm = |bound: &mut Vec<(HostId, BindHandle)>| {
        for &(host, batch) in &batches {
            for r in plane.bind(host, batch, BindContext::Normal).unwrap() {
                bound.push((host, r.unwrap()));
            }
        }
    };
    let unbind = |bound: &mut Vec<(HostId, BindHandle)>| {
        for (host, h) in bound.drain(..) {
            plane.unbind(host, h, UnbindContext::Normal).unwrap();
        }
    };
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(STORM_VVOLS as u64));
    let mut bound = Vec::with_capacity(STORM_VVOLS);
    g.bench_function("bind", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                storm(&mut bound);
                total += start.elapsed();
                unbind(&mut bound);
            }
            total
        })
    });
    g.bench_function("unbind", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                storm(&mut bound);
                let start = Instant::now();
                unbind(&mut bound);
                total += start.elapsed();
            }
            total
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(200))
        .measurement_time(Duration::from_millis(600));
    targets = resolve, io, bind_storm
}
criterion_main!(benches);

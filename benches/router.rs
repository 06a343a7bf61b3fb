//! Criterion benches of the data plane: resolve (hit, miss, stale) and routed
//! 4 KiB I/O against the same call on the backend directly.
//!
//! Run with `cargo bench --bench router`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use vvol::{
    ArraySpec, BindContext, BindHandle, ContainerSpec, ControlPlane, Generation, HostId, Limits,
    Naa, PeSpec, Protocol, SecondaryId, UnbindContext, VvolSpec, VvolType,
};

/// Bindings resolved by the resolve benches.
const BINDINGS: usize = 1_000;
/// Lookups per criterion iteration (a pseudo-random walk over the keys).
const LOOKUPS: usize = 1_024;
const MIB: u64 = 1 << 20;

/// A plane with one SCSI PE and `n` vVols bound for one host.
fn bound_plane(n: usize) -> (ControlPlane, HostId, Vec<BindHandle>) {
    let plane = ControlPlane::new(Limits::default().with_max_bind_batch(16));
    let a = plane.add_array(ArraySpec::new("bench", 0x1a2b)).unwrap();
    let c = plane
        .add_container(a, ContainerSpec::new("c", Protocol::Scsi, 1 << 50))
        .unwrap();
    let naa = Naa::from_parts(0x1a2b, 1, 1).unwrap();
    let pe = plane.add_pe(a, PeSpec::scsi(naa, 1)).unwrap();
    let host = plane.add_host("h").unwrap();
    plane.set_pe_context(host, &[pe]).unwrap();
    let vvols: Vec<_> = (0..n)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, MIB))
                .unwrap()
        })
        .collect();
    let mut handles = Vec::with_capacity(n);
    for batch in vvols.chunks(16) {
        for r in plane.bind(host, batch, BindContext::Normal).unwrap() {
            handles.push(r.unwrap());
        }
    }
    (plane, host, handles)
}

/// Deterministic pseudo-random indexes in `0..n`.
fn walk(n: usize) -> Vec<usize> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    (0..LOOKUPS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x % n as u64) as usize
        })
        .collect()
}

fn resolve(c: &mut Criterion) {
    let (plane, _, handles) = bound_plane(BINDINGS);
    let router = plane.router();
    let order = walk(handles.len());
    let mut g = c.benchmark_group("resolve_1k");
    g.throughput(criterion::Throughput::Elements(LOOKUPS as u64));
    g.bench_function("hit", |b| {
        b.iter(|| {
            for &i in &order {
                let h = handles[i];
                black_box(router.resolve(black_box(h.pe), black_box(h.secondary_id)));
            }
        })
    });
    g.bench_function("miss", |b| {
        b.iter(|| {
            for &i in &order {
                let sid = SecondaryId(16_000 - i as u64 % 1000);
                black_box(router.resolve(black_box(handles[0].pe), black_box(sid)));
            }
        })
    });
    g.bench_function("stale", |b| {
        b.iter(|| {
            for &i in &order {
                let h = handles[i];
                let found = router.resolve(black_box(h.pe), black_box(h.secondary_id));
                black_box(
                    found.is_some_and(|r| r.generation == Generation(h.generation.get() + 1)),
                );
            }
        })
    });
    g.finish();
}

fn io(c: &mut Criterion) {
    let (plane, host, handles) = bound_plane(16);
    let router = plane.router();
    let handle = handles[3];
    let vvol = plane.bindings_for_pe(handle.pe).unwrap()[3].vvol;
    let backend = plane.vvol(vvol).unwrap().backend;
    let data = vec![0x5Au8; 4096];
    let mut buf = vec![0u8; 4096];
    router.write(host, handle, 0, &data, false).unwrap();
    let mut g = c.benchmark_group("io_4k");
    g.throughput(criterion::Throughput::Bytes(4096));
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

fn bind(c: &mut Criterion) {
    let (plane, host, handles) = bound_plane(16);
    let vvols: Vec<_> = plane
        .bindings_for_host(host)
        .unwrap()
        .into_iter()
        .map(|b| b.vvol)
        .collect();
    for h in handles {
        plane.unbind(host, h, UnbindContext::Normal).unwrap();
    }
    c.bench_function("bind_unbind_batch_16", |b| {
        b.iter(|| {
            let results = plane.bind(host, &vvols, BindContext::Normal).unwrap();
            for r in results {
                plane
                    .unbind(host, r.unwrap(), UnbindContext::Normal)
                    .unwrap();
            }
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(1));
    targets = resolve, io, bind
}
criterion_main!(benches);

//! Criterion bench of the SCSI target's command path against the router it
//! routes through, on the same vVol:
//!
//! - `scsi_{1k,100k}/{read10,write10}_4k/{target,router}`: READ(10) or
//!   WRITE(10) of 4 KiB (8 blocks of 512 bytes) through
//!   [`ScsiTarget::execute_into`] into a caller's buffer, against
//!   [`Router::read`](vvol::Router::read) / `write` of the same 4 KiB, with
//!   1k and 100k bindings on the array (the bench fixture: one host, PEs of
//!   16,383 ids).
//!
//! After criterion, a pass of alternating rounds (router, target, router,
//! ... on each size and command, `ROUND_CALLS` calls a round) prints the
//! best ns per call of each as `scsi.<size>.<op>.<path> <ns>` lines and the
//! ratios, the figures BENCHMARKS.md shows; and a count of heap
//! allocations per command of `execute_into` (a counting global allocator).
//!
//! Run with `cargo bench --bench scsi` (`-- --warm-up-time 1
//! --measurement-time 3` for a short pass). `BENCH_SCSI_ROUNDS` sets the
//! number of alternating rounds (default 9).

mod fixture;

use std::alloc::System;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{Criterion, Throughput, criterion_group};
use fixture::fixture;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use vvol::scsi::{ItNexus, Lun, ScsiSession, ScsiTarget, Status};
use vvol::{BindHandle, HostId, Router};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Bytes a command moves.
const LEN: usize = 4096;
/// 512-byte blocks in [`LEN`].
const BLOCKS: u8 = (LEN / 512) as u8;
/// Calls per alternating round.
const ROUND_CALLS: u32 = 50_000;

const READ10: [u8; 10] = [0x28, 0, 0, 0, 0, 8, 0, 0, BLOCKS, 0];
const WRITE10: [u8; 10] = [0x2A, 0, 0, 0, 0, 8, 0, 0, BLOCKS, 0];
/// Byte offset of LBA 8 (the CDBs' LBA).
const OFFSET: u64 = 8 * 512;

/// One array with `n` bindings, a target over it, and one bound vVol
/// addressed both ways.
struct Setup {
    name: &'static str,
    bindings: usize,
    target: ScsiTarget,
    router: Arc<Router>,
    host: HostId,
    handle: BindHandle,
    lun: Lun,
    nexus: ItNexus,
}

impl Setup {
    fn new(name: &'static str, n: usize) -> Self {
        let f = fixture(n);
        let bindings = f.handles.len();
        // A binding in the middle of the array (on a middle PE at 100k).
        let handle = f.handles[bindings / 2];
        let array = f.plane.pe(handle.pe).unwrap().array;
        let host = f.host;
        let plane = Arc::new(f.plane);
        let router = plane.router();
        let target = ScsiTarget::new(Arc::clone(&plane), array).unwrap();
        let lun = target.lun_of(handle).unwrap();
        let nexus = ItNexus::new(host, 1);
        let s = Self {
            name,
            bindings,
            target,
            router,
            host,
            handle,
            lun,
            nexus,
        };
        // The power-on unit attention, then a written block range.
        let mut none = [0u8; 0];
        let first = s.target.execute_into(nexus, lun, &[0; 6], &[], &mut none);
        assert_eq!(first.status, Status::CheckCondition);
        s.write_target(&[0x5A; LEN]);
        s
    }

    fn read_target(&self, buf: &mut [u8]) {
        let c = self
            .target
            .execute_into(self.nexus, black_box(self.lun), &READ10, &[], buf);
        assert_eq!((c.status, c.data_in_len), (Status::Good, LEN));
        black_box(c);
    }

    fn write_target(&self, data: &[u8]) {
        let c = self
            .target
            .execute_into(self.nexus, black_box(self.lun), &WRITE10, data, &mut []);
        assert_eq!(c.status, Status::Good);
        black_box(c);
    }

    fn read_router(&self, buf: &mut [u8]) {
        self.router
            .read(self.host, black_box(self.handle), black_box(OFFSET), buf)
            .unwrap();
    }

    fn write_router(&self, data: &[u8]) {
        self.router
            .write(
                self.host,
                black_box(self.handle),
                black_box(OFFSET),
                data,
                false,
            )
            .unwrap();
    }
}

/// READ(10) through a session (what a transport connection holds).
fn read_session(session: &mut ScsiSession<'_>, lun: Lun, buf: &mut [u8]) {
    let c = session.execute_into(black_box(lun), &READ10, &[], buf);
    assert_eq!((c.status, c.data_in_len), (Status::Good, LEN));
    black_box(c);
}

/// WRITE(10) through a session.
fn write_session(session: &mut ScsiSession<'_>, lun: Lun, data: &[u8]) {
    let c = session.execute_into(black_box(lun), &WRITE10, data, &mut []);
    assert_eq!(c.status, Status::Good);
    black_box(c);
}

fn setups() -> Vec<Setup> {
    vec![Setup::new("1k", 1_000), Setup::new("100k", 100_000)]
}

fn scsi(c: &mut Criterion) {
    let data = vec![0xA5u8; LEN];
    let mut buf = vec![0u8; LEN];
    for s in setups() {
        let mut g = c.benchmark_group(format!("scsi_{}", s.name));
        g.throughput(Throughput::Bytes(LEN as u64));
        g.bench_function("read10_4k/target", |b| b.iter(|| s.read_target(&mut buf)));
        g.bench_function("read10_4k/router", |b| b.iter(|| s.read_router(&mut buf)));
        g.bench_function("write10_4k/target", |b| b.iter(|| s.write_target(&data)));
        g.bench_function("write10_4k/router", |b| b.iter(|| s.write_router(&data)));
        let mut session = s.target.session(s.nexus);
        g.bench_function("read10_4k/session", |b| {
            b.iter(|| read_session(&mut session, s.lun, &mut buf));
        });
        g.bench_function("write10_4k/session", |b| {
            b.iter(|| write_session(&mut session, s.lun, &data));
        });
        g.finish();
    }
}

/// ns per call of `calls` calls of `f`.
fn time(calls: u32, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..calls {
        f();
    }
    start.elapsed().as_nanos() as f64 / f64::from(calls)
}

/// Heap allocations per call of `calls` calls of `f`.
fn allocations(calls: u32, mut f: impl FnMut()) -> f64 {
    let region = Region::new(GLOBAL);
    for _ in 0..calls {
        f();
    }
    region.change().allocations as f64 / f64::from(calls)
}

/// Alternating rounds; prints the best figure of each.
fn rounds() {
    let rounds: usize = std::env::var("BENCH_SCSI_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(9);
    let data = vec![0xA5u8; LEN];
    let mut buf = vec![0u8; LEN];
    let setups = setups();
    // [setup][read, write][router, target, session]
    let mut best = vec![[[f64::INFINITY; 3]; 2]; setups.len()];
    let mut sessions: Vec<ScsiSession<'_>> =
        setups.iter().map(|s| s.target.session(s.nexus)).collect();
    for _ in 0..rounds {
        for (i, s) in setups.iter().enumerate() {
            let b = &mut best[i];
            let session = &mut sessions[i];
            b[0][0] = b[0][0].min(time(ROUND_CALLS, || s.read_router(&mut buf)));
            b[0][1] = b[0][1].min(time(ROUND_CALLS, || s.read_target(&mut buf)));
            b[0][2] = b[0][2].min(time(ROUND_CALLS, || read_session(session, s.lun, &mut buf)));
            b[1][0] = b[1][0].min(time(ROUND_CALLS, || s.write_router(&data)));
            b[1][1] = b[1][1].min(time(ROUND_CALLS, || s.write_target(&data)));
            b[1][2] = b[1][2].min(time(ROUND_CALLS, || write_session(session, s.lun, &data)));
        }
    }
    println!("\nalternating rounds: {rounds} x {ROUND_CALLS} calls, best ns per call");
    for (i, s) in setups.iter().enumerate() {
        for (j, op) in ["read10_4k", "write10_4k"].iter().enumerate() {
            let [router, target, session] = best[i][j];
            println!("scsi.{}.{op}.router {router:.2}", s.name);
            for (path, ns) in [("target", target), ("session", session)] {
                let over = ns - router;
                let allowed = (router * 0.25).max(40.0);
                println!("scsi.{}.{op}.{path} {ns:.2}", s.name);
                println!(
                    "scsi.{}.{op}.{path}_ratio {:.3} (+{over:.2} ns over the router, {} bindings; goal +{allowed:.2} ns: {})",
                    s.name,
                    ns / router,
                    s.bindings,
                    if over <= allowed { "met" } else { "missed" }
                );
            }
        }
    }
    for s in &setups {
        let read = allocations(1_000, || s.read_target(&mut buf));
        let write = allocations(1_000, || s.write_target(&data));
        let mut none = [0u8; 0];
        let tur = allocations(1_000, || {
            black_box(
                s.target
                    .execute_into(s.nexus, s.lun, &[0; 6], &[], &mut none),
            );
        });
        println!(
            "scsi.{}.allocations_per_command read10 {read} write10 {write} test_unit_ready {tur}",
            s.name
        );
    }
}

criterion_group!(benches, scsi);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    rounds();
}

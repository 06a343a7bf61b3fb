//! Durable bindings: round trip, power loss (with a test that a missing
//! sync is caught), SIGKILL of a child process, FileBackend data after
//! SIGKILL.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use vvol::backend::FileBackendOptions;
use vvol::*;

fn naa(n: u64) -> Naa {
    Naa::from_parts(0x00_1a_2b, 7, n).unwrap()
}

fn limits() -> Limits {
    Limits::default().with_event_window(8)
}

/// The id seed of the planes compared with a [`Model`]: with it both mint
/// the same vVol ids.
const SEED: u64 = 0x5EED;

/// Every query answer that must survive a reopen, as text.
pub(crate) fn fingerprint(plane: &ControlPlane) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    for a in plane.arrays() {
        let array = plane.array(a).unwrap();
        line(format!("{array:?}"));
        for c in &array.containers {
            line(format!("{:?}", plane.container(*c).unwrap()));
            for v in plane.vvols_in(*c).unwrap() {
                let vv = plane.vvol(v).unwrap();
                line(format!(
                    "vvol {} key {:?} c {:?} {:?} {} {} b {}",
                    vv.id,
                    vv.key,
                    vv.container,
                    vv.vtype,
                    vv.capacity_bytes,
                    vv.logical_block_size,
                    vv.bindings
                ));
                let mut b: Vec<String> = plane
                    .bindings_for_vvol(v)
                    .unwrap()
                    .iter()
                    .map(|b| format!("{b:?}"))
                    .collect();
                b.sort();
                line(format!("  {b:?}"));
                line(format!("  pr {:?}", plane.reservations(PrLu::Slu(v))));
            }
        }
    }
    for p in 0..16 {
        let pe = PeId(p);
        line(format!("{:?}", plane.pe(pe).map_err(|e| e.to_string())));
        line(format!("  pr {:?}", plane.reservations(PrLu::Alu(pe))));
        if let Ok(bs) = plane.bindings_for_pe(pe) {
            let mut bs: Vec<String> = bs.iter().map(|b| format!("{b:?}")).collect();
            bs.sort();
            line(format!("  {bs:?}"));
            for b in plane.bindings_for_pe(pe).unwrap() {
                // Host-aware: in per-(PE, host) scope the id names the
                // binding only with its host (per PE the host is ignored).
                let r = plane
                    .router()
                    .resolve_for_host(pe, b.hosts[0].0, b.handle.secondary_id)
                    .map(|r| r.generation);
                line(format!("  resolve {:?} -> {r:?}", b.handle.secondary_id));
            }
        }
    }
    for h in 0..16 {
        let host = HostId(h);
        line(format!("{:?}", plane.host(host).map_err(|e| e.to_string())));
        line(format!(
            "  router access {:?}",
            plane.router().mapped_pes(host)
        ));
        if let Ok(bs) = plane.bindings_for_host(host) {
            let mut bs: Vec<String> = bs.iter().map(|b| format!("{b:?}")).collect();
            bs.sort();
            line(format!("  {bs:?}"));
        }
    }
    line(format!("last event {:?}", plane.last_event_id()));
    out
}

/// The storm's fixed topology: small secondary-id spaces so ids are freed
/// and reused (FIFO order matters) all the time.
fn setup(plane: &ControlPlane) -> (Vec<HostId>, Vec<VvolId>) {
    let array = plane
        .add_array(ArraySpec::new("array-a", 0x00_1a_2b))
        .unwrap();
    let c = plane
        .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))
        .unwrap();
    let space = SecondaryIdSpace::new(SubsidiaryAddressing::Simple, 1, 6).unwrap();
    let pes: Vec<PeId> = (0..2)
        .map(|i| {
            plane
                .add_pe(
                    array,
                    PeSpec::scsi(naa(i), 200 + i as u16).with_secondary_ids(space),
                )
                .unwrap()
        })
        .collect();
    let hosts: Vec<HostId> = (0..3)
        .map(|i| {
            let h = plane.add_host(&format!("esx-{i}")).unwrap();
            for pe in pes.iter() {
                plane.map_pe(h, *pe).unwrap();
            }
            plane.set_pe_context(h, &pes).unwrap();
            h
        })
        .collect();
    let vvols = (0..10)
        .map(|_| {
            plane
                .create_vvol(c, VvolSpec::new(VvolType::Data, 1 << 20))
                .unwrap()
        })
        .collect();
    (hosts, vvols)
}

fn mix(i: u64) -> u64 {
    let mut z = i
        .wrapping_add(0x9E37_79B9_7F4A_7C15)
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 31)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 29)
}

/// Storm operation `i`, chosen from `i` and the current state (so the same
/// sequence replays the same on any plane in the same state). `Err` only
/// for journal errors: the operation was not acknowledged.
fn storm_op(
    plane: &ControlPlane,
    hosts: &[HostId],
    vvols: &[VvolId],
    i: u64,
) -> Result<(), ControlError> {
    let r = mix(i);
    let host = hosts[(r % hosts.len() as u64) as usize];
    let pick = |k: u64| vvols[((r >> (8 + 4 * k)) % vvols.len() as u64) as usize];
    let res = match (r >> 4) % 10 {
        0..=4 => {
            let n = 1 + (r >> 40) % 3;
            let batch: Vec<VvolId> = (0..n).map(pick).collect();
            plane.bind(host, &batch, BindContext::Normal).map(drop)
        }
        5..=7 => {
            let held = plane.bindings_for_host(host).unwrap();
            if held.is_empty() {
                return Ok(());
            }
            let b = &held[((r >> 20) % held.len() as u64) as usize];
            plane.unbind(host, b.handle, UnbindContext::Normal)
        }
        8 => plane.unbind_all_from_host(host).map(drop),
        _ => plane
            .bind(host, &[pick(0)], BindContext::RebindStart)
            .map(drop),
    };
    match res {
        Err(e @ ControlError::Journal(_)) => Err(e),
        _ => Ok(()),
    }
}

/// A non-durable plane that runs the same operations, with the fingerprint
/// after each count of operations.
struct Model {
    plane: ControlPlane,
    hosts: Vec<HostId>,
    vvols: Vec<VvolId>,
    prints: Vec<String>,
}

impl Model {
    fn new() -> Self {
        let plane = ControlPlane::new(limits()).with_id_seed(SEED).unwrap();
        let (hosts, vvols) = setup(&plane);
        let prints = vec![fingerprint(&plane)];
        Self {
            plane,
            hosts,
            vvols,
            prints,
        }
    }

    /// The fingerprint after `n` storm operations.
    fn after(&mut self, n: u64) -> &str {
        while (self.prints.len() as u64) <= n {
            let i = self.prints.len() as u64 - 1;
            storm_op(&self.plane, &self.hosts, &self.vvols, i).unwrap();
            self.prints.push(fingerprint(&self.plane));
        }
        &self.prints[n as usize]
    }

    /// How many operations a reopened plane holds: `acked` or `acked + 1`
    /// (the one in flight, whole), else an error naming the difference.
    fn check(&mut self, got: &str, acked: u64) -> Result<u64, String> {
        if self.after(acked) == got {
            return Ok(acked);
        }
        if self.after(acked + 1) == got {
            return Ok(acked + 1);
        }
        Err(format!(
            "after {acked} acknowledged operations the reopened plane matches neither {acked} nor {} operations:\n{got}\nexpected:\n{}",
            acked + 1,
            self.after(acked)
        ))
    }
}

#[test]
fn round_trip_rebuilds_every_query_and_the_next_bind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let opts = || JournalOptions::default().with_compact_every(1000);
    let plane = ControlPlane::open_durable(&path, limits(), opts()).unwrap();
    assert!(plane.is_durable());
    let (hosts, vvols) = setup(&plane);
    let (h0, h1) = (hosts[0], hosts[1]);
    // Refcounts > 1, a shared binding.
    let a = plane.bind(h0, &vvols[0..3], BindContext::Normal).unwrap();
    plane.bind(h0, &vvols[0..2], BindContext::Normal).unwrap();
    plane.bind(h1, &vvols[0..1], BindContext::Normal).unwrap();
    // Free ids out of order so FIFO order matters.
    let more: Vec<BindHandle> = plane
        .bind(h1, &vvols[3..8], BindContext::Normal)
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    plane.unbind(h1, more[3], UnbindContext::Normal).unwrap();
    plane.unbind(h1, more[0], UnbindContext::Normal).unwrap();
    plane.unbind(h1, more[2], UnbindContext::Normal).unwrap();
    // A rebind in progress on a draining PE.
    let old = a[2].as_ref().unwrap();
    let ev = plane.drain_pe(old.pe).unwrap();
    plane
        .bind(h0, &vvols[2..3], BindContext::RebindStart)
        .unwrap();
    plane.resize_vvol(vvols[9], 2 << 20).unwrap();
    let last = plane.last_event_id();
    assert!(last >= ev);

    // One writer at a time: the journal is locked while a plane holds it.
    assert!(matches!(
        ControlPlane::open_durable(&path, limits(), opts()),
        Err(JournalError::Locked { .. })
    ));
    let before = fingerprint(&plane);
    drop(plane);
    for compact in [false, true] {
        let reopened = ControlPlane::open_durable(&path, limits(), opts()).unwrap();
        assert_eq!(fingerprint(&reopened), before, "compacted: {compact}");
        reopened.check_invariants();
        // Events before the reopen are lost, never wrong; new ones continue.
        assert_eq!(reopened.last_event_id(), last);
        assert!(reopened.events_since(last).unwrap().is_empty());
        assert!(matches!(
            reopened.events_since(EventId(last.0 - 1)),
            Err(ControlError::LostEvent { .. })
        ));
        if !compact {
            // The second round reopens from a snapshot.
            reopened.compact_journal().unwrap();
        }
        drop(reopened);
    }
    // The next binds get the same secondary ids and generations (a second
    // plane continues on an in-memory copy of the journal).
    let plane = ControlPlane::with_store(
        Box::new(MemStore::from_bytes(std::fs::read(&path).unwrap())),
        limits(),
        opts(),
    )
    .unwrap();
    let reopened = ControlPlane::open_durable(&path, limits(), opts()).unwrap();
    for (i, v) in vvols[3..9].iter().enumerate() {
        let host = hosts[i % 3];
        let x = plane.bind(host, &[*v], BindContext::Normal).unwrap();
        let y = reopened.bind(host, &[*v], BindContext::Normal).unwrap();
        assert_eq!(format!("{x:?}"), format!("{y:?}"));
    }
    let e1 = plane.fail_pe(PeId(1)).unwrap();
    let e2 = reopened.fail_pe(PeId(1)).unwrap();
    assert_eq!(e1, e2);
    assert_eq!(fingerprint(&plane), fingerprint(&reopened));
    drop(reopened);
    // And the reopened plane's own records are durable too.
    let third = ControlPlane::open_durable(&path, limits(), opts()).unwrap();
    assert_eq!(fingerprint(&third), fingerprint(&plane));
}

#[test]
fn journal_limits_have_typed_errors() {
    // Record size: a mutation whose record is too large changes nothing.
    let mem = MemStore::new();
    let opts = || JournalOptions::default().with_max_record_bytes(64);
    let plane = ControlPlane::with_store(Box::new(mem.clone()), limits(), opts()).unwrap();
    let err = plane.add_host(&"h".repeat(100)).unwrap_err();
    assert!(matches!(
        err,
        ControlError::Journal(JournalError::RecordTooLarge { max: 64, .. })
    ));
    assert_eq!(err.fault(), VasaFault::StorageFault);
    assert!(plane.host(HostId(0)).is_err(), "nothing applied");
    let h = plane.add_host("esx").unwrap();
    drop(plane);
    let plane = ControlPlane::with_store(Box::new(mem.clone()), limits(), opts()).unwrap();
    assert_eq!(plane.host(h).unwrap().name, "esx");
    drop(plane);
    // Reading a record larger than the limit is a typed error too.
    let big = ControlPlane::with_store(
        Box::new(mem),
        limits(),
        JournalOptions::default().with_max_record_bytes(8),
    );
    assert!(matches!(
        big,
        Err(JournalError::RecordTooLarge { max: 8, .. })
    ));
    // Corruption before the tail is an error, never applied.
    let mem = MemStore::new();
    let plane =
        ControlPlane::with_store(Box::new(mem.clone()), limits(), JournalOptions::default())
            .unwrap();
    plane.add_host("a").unwrap();
    plane.add_host("b").unwrap();
    drop(plane);
    let mut bytes = mem.power_cut(0, None);
    let at = bytes.len() - 3;
    bytes[at] ^= 0xFF;
    // Flipping a byte of the last record is a torn tail: dropped.
    let plane = ControlPlane::with_store(
        Box::new(MemStore::from_bytes(bytes.clone())),
        limits(),
        JournalOptions::default(),
    )
    .unwrap();
    assert!(plane.host(HostId(0)).is_ok() && plane.host(HostId(1)).is_err());
    bytes[at] ^= 0xFF;
    bytes[12] ^= 0xFF; // inside the header record
    let err = ControlPlane::with_store(
        Box::new(MemStore::from_bytes(bytes)),
        limits(),
        JournalOptions::default(),
    );
    assert!(matches!(err, Err(JournalError::Corrupt { .. })));
}

#[test]
fn explicit_backends_need_a_provider() {
    #[derive(Debug)]
    struct Fresh;
    impl BackendProvider for Fresh {
        fn backend(
            &self,
            _: VvolId,
            _: &BackendKey,
            cap: u64,
            bs: u32,
        ) -> Option<std::sync::Arc<dyn BlockBackend>> {
            Some(std::sync::Arc::new(MemoryBackend::new(cap, bs).unwrap()))
        }
    }
    let mem = MemStore::new();
    let plane =
        ControlPlane::with_store(Box::new(mem.clone()), limits(), JournalOptions::default())
            .unwrap();
    let array = plane.add_array(ArraySpec::new("a", 1)).unwrap();
    let c = plane
        .add_container(array, ContainerSpec::new("c", Protocol::Scsi, 1 << 30))
        .unwrap();
    let backend = std::sync::Arc::new(MemoryBackend::new(1 << 20, 512).unwrap());
    let v = plane
        .create_vvol_with_backend(
            c,
            VvolSpec::new(VvolType::Data, 1 << 20),
            backend,
            BackendKey::new("disk-7").unwrap(),
        )
        .unwrap();
    drop(plane);
    let image = mem.power_cut(0, None);
    let err = ControlPlane::with_store(
        Box::new(MemStore::from_bytes(image.clone())),
        limits(),
        JournalOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, JournalError::BackendRequired { vvol, ref key } if vvol == v && key.as_str() == "disk-7")
    );
    let plane = ControlPlane::with_store(
        Box::new(MemStore::from_bytes(image)),
        limits(),
        JournalOptions::default().with_backend_provider(std::sync::Arc::new(Fresh)),
    )
    .unwrap();
    assert_eq!(plane.vvol(v).unwrap().capacity_bytes, 1 << 20);
    plane.compact_journal().unwrap();
}

/// Runs many simulated power cuts: acknowledged operations, then one whose
/// sync fails (in flight), then a cut that keeps, tears or drops the
/// unsynced bytes. After each reopen the plane must hold every acknowledged
/// operation and the in-flight one whole or not at all.
fn power_loss_check(skip_sync: bool, cuts: u64) -> Result<(), String> {
    let opts = || {
        JournalOptions::default()
            .with_compact_every(9)
            .with_id_seed(SEED)
            .test_only_skip_sync(skip_sync)
    };
    let mut model = Model::new();
    let mut mem = MemStore::new();
    let mut plane = ControlPlane::with_store(Box::new(mem.clone()), limits(), opts()).unwrap();
    let (hosts, vvols) = setup(&plane);
    let mut done = 0u64;
    for cut in 0..cuts {
        let r = mix(cut ^ 0xC0FFEE);
        for _ in 0..(1 + r % 6) {
            storm_op(&plane, &hosts, &vvols, done).map_err(|e| e.to_string())?;
            done += 1;
        }
        mem.fail_sync_after(0);
        if storm_op(&plane, &hosts, &vvols, done).is_ok() {
            done += 1; // acknowledged (only possible without a sync)
        }
        let pending = mem.pending_len();
        let keep = match cut % 3 {
            0 => 0,
            _ => ((r >> 16) as usize) % (pending + 1),
        };
        let garbage = (cut % 3 == 2 && keep > 0).then(|| ((r >> 40) as usize) % keep);
        let image = mem.power_cut(keep, garbage);
        drop(plane);
        mem = MemStore::from_bytes(image);
        plane = ControlPlane::with_store(Box::new(mem.clone()), limits(), opts())
            .map_err(|e| format!("reopen after cut {cut}: {e}"))?;
        done = model.check(&fingerprint(&plane), done)?;
        plane.check_invariants();
    }
    Ok(())
}

#[test]
fn power_loss_keeps_every_acknowledged_operation() {
    power_loss_check(false, 150).unwrap();
}

#[test]
fn power_loss_check_catches_a_skipped_sync() {
    let err = power_loss_check(true, 150).unwrap_err();
    assert!(err.contains("acknowledged"), "{err}");
}

const CHILD_ENV: &str = "VVOL_JOURNAL_STORM_CHILD";
const CHILD_START: &str = "VVOL_JOURNAL_STORM_START";
const CHILD_KIND: &str = "VVOL_JOURNAL_STORM_KIND";

fn child_opts() -> JournalOptions {
    JournalOptions::default()
        .with_compact_every(7)
        .with_id_seed(SEED)
}

/// The child side of the SIGKILL tests (does nothing unless the parent set
/// its environment): runs operations, printing each acknowledged one.
#[test]
fn storm_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let start: u64 = std::env::var(CHILD_START).unwrap().parse().unwrap();
    let stdout = std::io::stdout();
    if std::env::var(CHILD_KIND).as_deref() == Ok("file") {
        let backend = FileBackend::open(
            Path::new(&dir).join("data"),
            FileBackendOptions::default().with_create_capacity(BLOCKS * 512),
        )
        .unwrap();
        for i in start..start + 100_000 {
            backend
                .write_at((i % BLOCKS) * 512, &block_of(i), i % 2 == 0)
                .unwrap();
            if i % 2 == 1 {
                backend.flush().unwrap();
            }
            let mut out = stdout.lock();
            writeln!(out, "ACK {i}").unwrap();
            out.flush().unwrap();
        }
        return;
    }
    let plane =
        ControlPlane::open_durable(Path::new(&dir).join("j"), limits(), child_opts()).unwrap();
    let hosts: Vec<HostId> = (0..3).map(HostId).collect();
    let array = plane.arrays()[0];
    let c = plane.array(array).unwrap().containers[0];
    let mut vvols = plane.vvols_in(c).unwrap();
    vvols.sort();
    let mut model_order = Model::new().vvols;
    model_order.retain(|v| vvols.contains(v));
    for i in start..start + 100_000 {
        storm_op(&plane, &hosts, &model_order, i).unwrap();
        let mut out = stdout.lock();
        writeln!(out, "ACK {i}").unwrap();
        out.flush().unwrap();
    }
}

/// Spawns the child, kills it with SIGKILL after `after` acknowledgements,
/// returns the last acknowledged index (if any).
fn run_and_kill(dir: &Path, kind: &str, start: u64, after: u64) -> Option<u64> {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "journal::storm_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir)
        .env(CHILD_START, start.to_string())
        .env(CHILD_KIND, kind)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut last = None;
    let mut seen = 0;
    while seen < after {
        let Some(Ok(line)) = lines.next() else { break };
        if let Some(i) = line.strip_prefix("ACK ") {
            last = Some(i.parse::<u64>().unwrap());
            seen += 1;
        }
    }
    child.kill().unwrap();
    // Acknowledgements already in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(i) = line.strip_prefix("ACK ") {
            last = Some(i.parse::<u64>().unwrap());
        }
    }
    child.wait().unwrap();
    last
}

#[test]
fn sigkill_during_a_bind_storm_loses_no_acknowledged_operation() {
    let dir = tempfile::tempdir().unwrap();
    {
        let plane =
            ControlPlane::open_durable(dir.path().join("j"), limits(), child_opts()).unwrap();
        setup(&plane);
    }
    let mut model = Model::new();
    let mut done = 0u64;
    for kill in 0..22u64 {
        let after = 1 + mix(kill) % 40;
        let acked = run_and_kill(dir.path(), "plane", done, after).map_or(done, |i| i + 1);
        let plane = ControlPlane::open_durable(dir.path().join("j"), limits(), child_opts())
            .unwrap_or_else(|e| panic!("reopen after kill {kill}: {e}"));
        plane.check_invariants();
        done = model
            .check(&fingerprint(&plane), acked)
            .unwrap_or_else(|e| panic!("kill {kill}: {e}"));
    }
    assert!(done > 22, "the storm made progress: {done}");
}

const BLOCKS: u64 = 64;

fn block_of(i: u64) -> Vec<u8> {
    i.to_le_bytes().repeat(64)
}

#[test]
fn file_backend_data_flushed_or_fua_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut done = 0u64;
    for kill in 0..5u64 {
        let after = 20 + mix(kill) % 200;
        let acked = run_and_kill(dir.path(), "file", done, after).map_or(done, |i| i + 1);
        let backend =
            FileBackend::open(dir.path().join("data"), FileBackendOptions::default()).unwrap();
        for b in 0..BLOCKS.min(acked) {
            // The last acknowledged write to block b, or the one in flight.
            let last = (0..acked).rev().find(|i| i % BLOCKS == b).unwrap();
            let mut buf = vec![0u8; 512];
            backend.read_at(b * 512, &mut buf).unwrap();
            assert!(
                buf == block_of(last) || (acked % BLOCKS == b && buf == block_of(acked)),
                "kill {kill}: block {b} lost write {last}"
            );
        }
        // The write in flight at the kill is redone by the next child.
        done = acked;
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary bytes opened as a journal: a plane or a typed error, never
    /// a panic (the `journal_reader` fuzz target runs the same entry point).
    #[test]
    fn arbitrary_bytes_open_or_fail_typed(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
        let opened = ControlPlane::with_store(
            Box::new(MemStore::from_bytes(bytes)),
            limits(),
            JournalOptions::default().with_max_record_bytes(1 << 16),
        );
        if let Ok(plane) = opened {
            plane.check_invariants();
        }
    }

    /// A real journal with bytes flipped anywhere: reopening gives a plane
    /// whose state is consistent, or a typed error; never a panic.
    #[test]
    fn damaged_journals_open_consistently_or_fail_typed(
        flips in proptest::collection::vec((proptest::prelude::any::<proptest::sample::Index>(), 1u8..=255), 1..4),
    ) {
        let mut bytes = vvol::testing::journal::sample_journal().unwrap();
        for (at, mask) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= mask;
        }
        if let Ok(plane) = ControlPlane::with_store(
            Box::new(MemStore::from_bytes(bytes)),
            limits(),
            JournalOptions::default(),
        ) {
            plane.check_invariants();
        }
    }

    /// The sample journal edited frame by frame and re-framed with valid
    /// checksums (what the `journal_reader` fuzz target does): the reader
    /// gets past the CRC to the header, snapshot and record decoders, and
    /// answers a consistent plane or a typed error there, never a panic.
    #[test]
    fn reframed_damaged_journals_open_consistently_or_fail_typed(
        edits in proptest::collection::vec(proptest::prelude::any::<u8>(), 5..60),
    ) {
        use vvol::testing::journal::{apply_edits, frame_journal, journal_frames, sample_journal};
        let mut frames = journal_frames(&sample_journal().unwrap()).unwrap();
        apply_edits(&mut frames, &edits);
        let opened = ControlPlane::with_store(
            Box::new(MemStore::from_bytes(frame_journal(&frames))),
            limits(),
            JournalOptions::default(),
        );
        match opened {
            Ok(plane) => plane.check_invariants(),
            Err(JournalError::Corrupt { reason, .. }) => proptest::prop_assert!(
                reason != "checksum mismatch before the tail",
                "a re-framed journal failed its checksum"
            ),
            Err(_) => {}
        }
    }
}

/// A header whose snapshot index leaves no room for the records after it
/// (the index would wrap) is refused as corrupt, not added up.
#[test]
fn a_snapshot_index_that_would_wrap_is_corrupt() {
    use vvol::testing::journal::{frame_journal, journal_frames, sample_journal};
    let mut frames = journal_frames(&sample_journal().unwrap()).unwrap();
    // Header: magic (8), version (1), snapshot index (8), chunk count (4).
    frames[0][9..17].copy_from_slice(&u64::MAX.to_le_bytes());
    let opened = ControlPlane::with_store(
        Box::new(MemStore::from_bytes(frame_journal(&frames))),
        limits(),
        JournalOptions::default(),
    );
    match opened {
        Err(JournalError::Corrupt { reason, .. }) => {
            assert_eq!(reason, "snapshot index leaves no room for records");
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

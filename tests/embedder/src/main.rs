//! An embedder of `vvol`: its own block backend, its own PE selection
//! policy, a durable plane in a temporary directory, and the behaviour an
//! embedder relies on, checked through the public API only (no `testing`
//! feature). Exits non-zero when a check fails.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use vvol::{
    ArrayId, ArraySpec, BackendError, BackendKey, BackendOp, BackendProvider, BindContext,
    BindHandle, BlockBackend, ContainerId, ContainerSpec, ControlError, ControlPlane, HostId,
    JournalError, JournalOptions, Limits, Naa, PeCandidate, PeId, PeSelectionPolicy, PeSpec,
    Protocol, VvolId, VvolSpec, VvolType,
};

type Res<T = ()> = Result<T, Box<dyn Error>>;

/// Fails the current check with a message.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err(format!($($msg)+).into());
        }
    };
}

const BLOCK: u32 = 512;
const CAPACITY: u64 = 4 << 20;
const COMPANY_ID: u32 = 0x00_1A_2B;

/// A flat disk in a `Vec<u8>` behind a mutex: only the five required
/// methods of `BlockBackend`.
#[derive(Debug)]
struct VecDisk {
    bytes: Mutex<Vec<u8>>,
}

impl VecDisk {
    fn new(capacity: u64) -> Arc<Self> {
        let len = usize::try_from(capacity).expect("capacity fits in memory");
        Arc::new(Self {
            bytes: Mutex::new(vec![0; len]),
        })
    }

    fn range(
        &self,
        op: BackendOp,
        offset: u64,
        len: usize,
    ) -> Result<(usize, usize), BackendError> {
        let capacity = self.capacity_bytes();
        let len64 = len as u64;
        match offset.checked_add(len64) {
            Some(end) if end <= capacity => Ok((offset as usize, end as usize)),
            _ => Err(BackendError::OutOfRange {
                op,
                offset,
                len: len64,
                capacity,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<u8>> {
        self.bytes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl BlockBackend for VecDisk {
    fn capacity_bytes(&self) -> u64 {
        self.lock().len() as u64
    }

    fn logical_block_size(&self) -> u32 {
        BLOCK
    }

    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let (start, end) = self.range(BackendOp::Read, offset, buf.len())?;
        buf.copy_from_slice(&self.lock()[start..end]);
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8], _fua: bool) -> Result<(), BackendError> {
        let (start, end) = self.range(BackendOp::Write, offset, data.len())?;
        self.lock()[start..end].copy_from_slice(data);
        Ok(())
    }

    fn flush(&self) -> Result<(), BackendError> {
        Ok(())
    }
}

/// The embedder's own record of its disks, by backend key: what a reopened
/// durable plane asks for.
#[derive(Debug, Default)]
struct Disks {
    by_key: Mutex<HashMap<String, Arc<VecDisk>>>,
    asked: AtomicUsize,
}

impl Disks {
    fn add(&self, key: &str, disk: Arc<VecDisk>) {
        self.by_key
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.to_owned(), disk);
    }
}

impl BackendProvider for Disks {
    fn backend(
        &self,
        _vvol: VvolId,
        key: &BackendKey,
        capacity_bytes: u64,
        logical_block_size: u32,
    ) -> Option<Arc<dyn BlockBackend>> {
        self.asked.fetch_add(1, Ordering::Relaxed);
        let disks = self.by_key.lock().unwrap_or_else(PoisonError::into_inner);
        let disk = disks.get(key.as_str())?;
        if disk.capacity_bytes() < capacity_bytes
            || !logical_block_size.is_multiple_of(disk.logical_block_size())
        {
            return None;
        }
        Some(Arc::clone(disk) as Arc<dyn BlockBackend>)
    }
}

/// Round robin over the candidates; counts its calls so the checks can see
/// that the plane uses it.
#[derive(Debug, Default)]
struct RoundRobin {
    next: AtomicUsize,
    calls: Arc<AtomicUsize>,
}

impl PeSelectionPolicy for RoundRobin {
    fn choose(&self, _host: HostId, _vvol: VvolId, candidates: &[PeCandidate]) -> usize {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.next.fetch_add(1, Ordering::Relaxed) % candidates.len()
    }
}

/// A policy with a bug.
#[derive(Debug)]
struct Panicking;

impl PeSelectionPolicy for Panicking {
    fn choose(&self, _host: HostId, _vvol: VvolId, _candidates: &[PeCandidate]) -> usize {
        panic!("the embedder's policy has a bug");
    }
}

/// One array, one SCSI container, `pes` PEs, one host that sees them all.
struct Topology {
    container: ContainerId,
    pes: Vec<PeId>,
    host: HostId,
}

fn build(plane: &ControlPlane, pes: u32) -> Res<Topology> {
    let array: ArrayId = plane.add_array(ArraySpec::new("array-1", COMPANY_ID))?;
    let container =
        plane.add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))?;
    let mut ids = Vec::new();
    for n in 0..pes {
        let naa = Naa::from_parts(COMPANY_ID, u64::from(n) + 1, 0).ok_or("NAA out of range")?;
        ids.push(plane.add_pe(array, PeSpec::scsi(naa, 250 + n as u16))?);
    }
    let host = plane.add_host("esx-01")?;
    for pe in ids.iter() {
        plane.map_pe(host, *pe)?;
    }
    plane.set_pe_context(host, &ids)?;
    Ok(Topology {
        container,
        pes: ids,
        host,
    })
}

/// A vVol on a new `VecDisk`, registered with `disks` under `key`.
fn disk_vvol(
    plane: &ControlPlane,
    container: ContainerId,
    disks: &Disks,
    key: &str,
) -> Res<VvolId> {
    let disk = VecDisk::new(CAPACITY);
    disks.add(key, Arc::clone(&disk));
    let spec = VvolSpec::new(VvolType::Data, CAPACITY).with_logical_block_size(BLOCK);
    Ok(plane.create_vvol_with_backend(container, spec, disk, BackendKey::new(key)?)?)
}

fn bind_one(plane: &ControlPlane, host: HostId, vvol: VvolId) -> Res<BindHandle> {
    Ok(plane.bind(host, &[vvol], BindContext::Normal)?.remove(0)?)
}

fn read_block(plane: &ControlPlane, host: HostId, handle: BindHandle, offset: u64) -> Res<Vec<u8>> {
    let mut buf = vec![0u8; BLOCK as usize];
    plane.router().read(host, handle, offset, &mut buf)?;
    Ok(buf)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Res<Self> {
        let dir = std::env::temp_dir().join(format!("vvol-embedder-{}-{name}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Two independent planes mint different vVol ids (random id seeds).
fn distinct_ids() -> Res {
    let disks = Disks::default();
    let mut ids = Vec::new();
    for _ in 0..2 {
        let plane = ControlPlane::new(Limits::default());
        let topo = build(&plane, 1)?;
        ids.push(disk_vvol(&plane, topo.container, &disks, "disk")?);
        ids.push(plane.create_vvol(topo.container, VvolSpec::new(VvolType::Config, 4 << 20))?);
    }
    ensure!(
        ids[0] != ids[2] && ids[1] != ids[3],
        "two planes minted the same ids: {ids:?}"
    );
    Ok(())
}

/// A second open of the same journal is refused while the first is open.
fn journal_locked() -> Res {
    let dir = TempDir::new("locked")?;
    let path = dir.path().join("plane.journal");
    let first = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default())?;
    let second = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default());
    ensure!(
        matches!(second, Err(JournalError::Locked { .. })),
        "second open: {second:?}"
    );
    drop(first);
    let again = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default())?;
    ensure!(again.is_durable(), "reopened plane is not durable");
    Ok(())
}

fn durable_options(disks: &Arc<Disks>, calls: &Arc<AtomicUsize>) -> JournalOptions {
    let policy = RoundRobin {
        next: AtomicUsize::new(0),
        calls: Arc::clone(calls),
    };
    JournalOptions::default()
        .with_backend_provider(Arc::clone(disks) as Arc<dyn BackendProvider>)
        .with_policy(Box::new(policy))
}

/// Bindings and handles survive drop, reopen (with the embedder's backends
/// given back by key) and compaction; a reopen without a provider is refused.
fn durable_reopen() -> Res {
    let dir = TempDir::new("durable")?;
    let path = dir.path().join("plane.journal");
    let disks = Arc::new(Disks::default());
    let calls = Arc::new(AtomicUsize::new(0));

    let plane =
        ControlPlane::open_durable(&path, Limits::default(), durable_options(&disks, &calls))?;
    let topo = build(&plane, 2)?;
    let a = disk_vvol(&plane, topo.container, &disks, "disk-a")?;
    let b = disk_vvol(&plane, topo.container, &disks, "disk-b")?;
    let handles: Vec<BindHandle> = plane
        .bind(topo.host, &[a, b], BindContext::Normal)?
        .into_iter()
        .collect::<Result<_, _>>()?;
    ensure!(
        calls.load(Ordering::Relaxed) == 2,
        "policy calls: {}",
        calls.load(Ordering::Relaxed)
    );
    ensure!(
        handles[0].pe == topo.pes[0] && handles[1].pe == topo.pes[1],
        "round robin put the batch on {handles:?}, PEs {:?}",
        topo.pes
    );
    let router = plane.router();
    router.write(topo.host, handles[0], 4096, &[0xA1; BLOCK as usize], true)?;
    router.write(topo.host, handles[1], 0, &[0xB2; BLOCK as usize], true)?;
    let before = plane.bindings_for_host(topo.host)?;
    drop(router);
    drop(plane);

    let refused = ControlPlane::open_durable(&path, Limits::default(), JournalOptions::default());
    ensure!(
        matches!(refused, Err(JournalError::BackendRequired { .. })),
        "reopen without a provider: {refused:?}"
    );

    for round in ["after reopen", "after compaction and reopen"] {
        let plane =
            ControlPlane::open_durable(&path, Limits::default(), durable_options(&disks, &calls))?;
        let after = plane.bindings_for_host(topo.host)?;
        ensure!(
            after == before,
            "{round}: bindings {after:?}, were {before:?}"
        );
        ensure!(
            read_block(&plane, topo.host, handles[0], 4096)? == [0xA1; BLOCK as usize],
            "{round}: data of vVol a through its old handle"
        );
        ensure!(
            read_block(&plane, topo.host, handles[1], 0)? == [0xB2; BLOCK as usize],
            "{round}: data of vVol b through its old handle"
        );
        // Binding again for the same host gives back the same handle.
        ensure!(
            bind_one(&plane, topo.host, a)? == handles[0],
            "{round}: rebind of a changed its handle"
        );
        plane.unbind(topo.host, handles[0], vvol::UnbindContext::Normal)?;
        plane.compact_journal()?;
    }
    ensure!(
        disks.asked.load(Ordering::Relaxed) >= 4,
        "the provider was not asked for the disks"
    );
    // Replay never runs the policy: still the two choices of the first bind.
    ensure!(calls.load(Ordering::Relaxed) == 2, "replay ran the policy");
    Ok(())
}

/// A failed PE serves nothing; once restored it takes new binds again.
fn fail_and_restore() -> Res {
    let disks = Disks::default();
    let plane = ControlPlane::with_policy(Limits::default(), Box::new(RoundRobin::default()));
    let topo = build(&plane, 1)?;
    let pe = topo.pes[0];
    let old = disk_vvol(&plane, topo.container, &disks, "old")?;
    let old_handle = bind_one(&plane, topo.host, old)?;
    plane
        .router()
        .write(topo.host, old_handle, 0, &[0x0F; BLOCK as usize], true)?;

    plane.fail_pe(pe)?;
    ensure!(
        read_block(&plane, topo.host, old_handle, 0).is_err(),
        "I/O through a failed PE succeeded"
    );
    let fresh = disk_vvol(&plane, topo.container, &disks, "fresh")?;
    let refused = plane.bind(topo.host, &[fresh], BindContext::Normal);
    ensure!(
        matches!(refused, Err(ControlError::NoEligiblePe { .. })),
        "bind through the only, failed PE: {refused:?}"
    );

    plane.restore_pe(pe)?;
    let handle = bind_one(&plane, topo.host, fresh)?;
    ensure!(handle.pe == pe, "bound on {handle:?}, not the restored PE");
    plane
        .router()
        .write(topo.host, handle, 512, &[0x3C; BLOCK as usize], true)?;
    ensure!(
        read_block(&plane, topo.host, handle, 512)? == [0x3C; BLOCK as usize],
        "new binding on the restored PE"
    );
    ensure!(
        read_block(&plane, topo.host, old_handle, 0)? == [0x0F; BLOCK as usize],
        "the binding the failed PE kept"
    );
    Ok(())
}

/// A panicking policy fails the bind with `PolicyPanicked` and binds nothing.
fn panicking_policy() -> Res {
    let disks = Disks::default();
    let plane = ControlPlane::with_policy(Limits::default(), Box::new(Panicking));
    let topo = build(&plane, 2)?;
    let a = disk_vvol(&plane, topo.container, &disks, "a")?;
    let b = disk_vvol(&plane, topo.container, &disks, "b")?;
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = plane.bind(topo.host, &[a, b], BindContext::Normal);
    std::panic::set_hook(hook);
    ensure!(
        matches!(result, Err(ControlError::PolicyPanicked)),
        "bind with a panicking policy: {result:?}"
    );
    let bound = plane.bindings_for_host(topo.host)?;
    ensure!(bound.is_empty(), "bindings after the panic: {bound:?}");
    for vvol in [a, b] {
        ensure!(plane.bindings_for_vvol(vvol)?.is_empty(), "{vvol} is bound");
    }
    for pe in &topo.pes {
        ensure!(plane.bindings_for_pe(*pe)?.is_empty(), "{pe} has bindings");
    }
    Ok(())
}

/// With vVol's default features: the SCSI target reads the embedder's disk.
#[cfg(feature = "transports")]
fn scsi_reads_the_disk() -> Res {
    use vvol::scsi::{ItNexus, ScsiTarget, Status};

    let disks = Disks::default();
    let plane = Arc::new(ControlPlane::new(Limits::default()));
    let topo = build(&plane, 1)?;
    let array = plane.arrays()[0];
    let target = ScsiTarget::new(Arc::clone(&plane), array)?;
    let vvol = disk_vvol(&plane, topo.container, &disks, "scsi")?;
    let handle = bind_one(&plane, topo.host, vvol)?;
    plane.router().write(
        topo.host,
        handle,
        2 * u64::from(BLOCK),
        &[0x77; BLOCK as usize],
        true,
    )?;
    let lun = target.lun_of(handle).ok_or("no LUN for a SCSI binding")?;
    let nexus = ItNexus::new(topo.host, 1);
    let tur = [0u8; 6];
    let _power_on_attention = target.execute(nexus, lun, &tur, &[]);
    let read10 = [0x28, 0, 0, 0, 0, 2, 0, 0, 1, 0]; // LBA 2, 1 block
    let response = target.execute(nexus, lun, &read10, &[]);
    ensure!(
        response.status == Status::Good,
        "READ(10): {:?}",
        response.status
    );
    ensure!(
        response.data_in == [0x77; BLOCK as usize],
        "READ(10) data differs"
    );
    Ok(())
}

struct Check(&'static str, fn() -> Res);

impl fmt::Debug for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

fn main() -> ExitCode {
    let checks = [
        Check("two planes mint different vVol ids", distinct_ids),
        Check("a second open_durable is Locked", journal_locked),
        Check(
            "reopen + compaction keep bindings, handles and data",
            durable_reopen,
        ),
        Check("a restored PE serves new binds", fail_and_restore),
        Check("a panicking policy binds nothing", panicking_policy),
        #[cfg(feature = "transports")]
        Check(
            "the SCSI target reads the embedder's disk",
            scsi_reads_the_disk,
        ),
    ];

    let mut failed = 0;
    for Check(name, check) in &checks {
        match check() {
            Ok(()) => println!("ok     {name}"),
            Err(e) => {
                failed += 1;
                println!("FAILED {name}: {e}");
            }
        }
    }
    println!("{} passed, {failed} failed", checks.len() - failed);
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

//! NBD interop with real peers (cargo feature `interop`; `scripts/interop`
//! installs them): `NbdBackend` against qemu-nbd (raw, qcow2), nbdkit's
//! memory plugin and nbd-server, and the gateway against qemu-io, nbdinfo,
//! nbdcopy and qemu-img. Every peer listens on 127.0.0.1 on an ephemeral
//! port and is killed by a drop guard. A missing peer binary fails the test.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vvol::backend::{BackendError, BlockBackend, MemoryBackend};
use vvol::nbd::proto;
use vvol::nbd::{Gateway, NbdBackend, NbdConfig, ServerConfig};
use vvol::testing::backend_conformance::Case;

use crate::backend_conformance as conf;
use crate::nbd::Served;

/// A peer process and its scratch directory; dropping it kills the process
/// (by its id only) and reaps it.
#[derive(Debug)]
pub(crate) struct Peer {
    child: Option<Child>,
    /// A daemon that detached from the process we started (nbd-server).
    daemon: Option<u32>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Peer {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Kills the peer now (the fault tests).
    fn kill(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Only ever one explicit, positive process id.
        if let Some(pid) = self.daemon.take().filter(|&pid| pid > 1) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Panics (fails the test) when `binary` is not installed.
fn require(binary: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {binary}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "peer binary `{binary}` is missing: run scripts/interop (apt-get install -y nbdkit libnbd-bin nbd-server qemu-utils)"
    );
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts `cmd` and waits until it accepts TCP
/// connections on `port`.
fn spawn(mut cmd: Command, port: u16, dir: tempfile::TempDir) -> Peer {
    let log_path = dir.path().join("peer.log");
    let log = std::fs::File::create(&log_path).expect("peer log");
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
    let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut peer = Peer {
        child: Some(child),
        daemon: None,
        port,
        _dir: dir,
    };
    for _ in 0..400 {
        let child = peer.child.as_mut().expect("child");
        if let Some(status) = child.try_wait().expect("try_wait") {
            let err = std::fs::read_to_string(&log_path).unwrap_or_default();
            panic!("{cmd:?} exited with {status}: {err}");
        }
        if TcpStream::connect(peer.addr()).is_ok() {
            return peer;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{cmd:?} did not start listening on port {port}");
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("vvol-nbd-")
        .tempdir()
        .expect("temp dir")
}

fn qemu_nbd(format: &str, capacity: u64) -> Peer {
    require("qemu-nbd");
    require("qemu-img");
    let dir = scratch();
    let image = dir.path().join(format!("disk.{format}"));
    if format == "raw" {
        // A sparse file: `qemu-img create` would allocate the first block.
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(capacity))
            .expect("raw image");
    } else {
        let out = Command::new("qemu-img")
            .args(["create", "-q", "-f", format])
            .arg(&image)
            .arg(capacity.to_string())
            .output()
            .expect("qemu-img create");
        assert!(out.status.success(), "{out:?}");
    }
    let port = free_port();
    let mut cmd = Command::new("qemu-nbd");
    cmd.args([
        "-f",
        format,
        "-t",
        "-e",
        "16",
        "-b",
        "127.0.0.1",
        "-x",
        "disk",
    ])
    .args(["-p", &port.to_string(), "--discard=unmap"])
    .arg(&image);
    spawn(cmd, port, dir)
}

fn nbdkit_memory(capacity: u64) -> Peer {
    require("nbdkit");
    let port = free_port();
    let mut cmd = Command::new("nbdkit");
    cmd.args(["-f", "-i", "127.0.0.1", "-p", &port.to_string(), "memory"])
        .arg(capacity.to_string());
    spawn(cmd, port, scratch())
}

fn nbd_server(capacity: u64) -> Peer {
    require("nbd-server");
    let dir = scratch();
    let image = dir.path().join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(capacity))
        .expect("image");
    let port = free_port();
    let conf = dir.path().join("nbd-server.conf");
    std::fs::write(
        &conf,
        format!(
            "[generic]\n    listenaddr = 127.0.0.1\n    port = {port}\n    allowlist = true\n\n[disk]\n    exportname = {}\n",
            image.display()
        ),
    )
    .expect("config");
    // nbd-server detaches (its -d mode serves a single connection): let it,
    // and kill the daemon by the id in its pid file.
    let pid_file = dir.path().join("nbd-server.pid");
    let out = Command::new("nbd-server")
        .arg("-C")
        .arg(&conf)
        .arg("-p")
        .arg(&pid_file)
        .output()
        .expect("nbd-server");
    assert!(out.status.success(), "nbd-server: {out:?}");
    let mut peer = Peer {
        child: None,
        daemon: None,
        port,
        _dir: dir,
    };
    for _ in 0..400 {
        if peer.daemon.is_none() {
            peer.daemon = std::fs::read_to_string(&pid_file)
                .ok()
                .and_then(|p| p.trim().parse().ok());
        }
        if peer.daemon.is_some() && TcpStream::connect(peer.addr()).is_ok() {
            return peer;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("nbd-server did not start listening on port {port}");
}

fn connect(peer: Peer, export: &str, block_size: u32) -> Arc<dyn BlockBackend> {
    let backend = NbdBackend::connect(
        NbdConfig::tcp(peer.addr(), export)
            .with_logical_block_size(block_size)
            .with_connections(2)
            .with_io_timeout(Duration::from_secs(30)),
    )
    .unwrap_or_else(|e| panic!("connect to the peer: {e}"));
    Arc::new(Served {
        backend,
        _guard: peer,
    })
}

fn qemu_raw(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    connect(qemu_nbd("raw", capacity), "disk", block_size)
}

fn qemu_qcow2(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    connect(qemu_nbd("qcow2", capacity), "disk", block_size)
}

fn nbdkit(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    connect(nbdkit_memory(capacity), "", block_size)
}

fn nbd_server_simple(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    let b = connect(nbd_server(capacity), "disk", block_size);
    assert!(
        !b.supports(vvol::BackendOp::Allocation),
        "nbd-server speaks simple replies only"
    );
    b
}

const ALL_CASES: [Case; 10] = [
    Case::FreshReadsAreZeros,
    Case::RoundTrip,
    Case::OutOfRange,
    Case::FuaWriteThenRead,
    Case::Flush,
    Case::WriteZeroesKeepsNeighbours,
    Case::DiscardReadsZerosOrOld,
    Case::AllocationAfterWrites,
    Case::ResizeGrowAndShrink,
    Case::ConcurrentWriters,
];

#[test]
fn interop_nbd_backend_qemu_nbd_raw() {
    for case in ALL_CASES {
        conf::run_case(case, qemu_raw, 512);
        conf::run_case(case, qemu_raw, 4096);
    }
}

#[test]
fn interop_nbd_backend_qemu_nbd_qcow2() {
    for case in ALL_CASES {
        conf::run_case(case, qemu_qcow2, 512);
    }
}

#[test]
fn interop_nbd_backend_nbdkit_memory() {
    for case in ALL_CASES {
        conf::run_case(case, nbdkit, 4096);
    }
}

/// nbd-server negotiates simple replies only (no allocation) and does not
/// advertise TRIM by default: every other case.
#[test]
fn interop_nbd_backend_nbd_server_simple_replies() {
    let cases: [Case; 8] = [
        Case::FreshReadsAreZeros,
        Case::RoundTrip,
        Case::OutOfRange,
        Case::FuaWriteThenRead,
        Case::Flush,
        Case::WriteZeroesKeepsNeighbours,
        Case::ResizeGrowAndShrink,
        Case::ConcurrentWriters,
    ];
    for case in cases {
        conf::run_case(case, nbd_server_simple, 512);
    }
}

#[test]
fn interop_nbd_backend_peer_killed_mid_io() {
    let mut peer = nbdkit_memory(64 << 20);
    let backend = Arc::new(
        NbdBackend::connect(
            NbdConfig::tcp(peer.addr(), "")
                .with_io_timeout(Duration::from_secs(5))
                .with_reconnect_attempts(2, Duration::from_millis(50)),
        )
        .expect("connect"),
    );
    let (tx, rx) = std::sync::mpsc::channel();
    let writer = {
        let backend = Arc::clone(&backend);
        std::thread::spawn(move || {
            let block = vec![0x3Cu8; 1 << 20];
            let mut i = 0u64;
            loop {
                if let Err(e) = backend.write_at((i % 64) << 20, &block, false) {
                    break e;
                }
                i += 1;
                if i == 8 {
                    tx.send(()).expect("signal");
                }
            }
        })
    };
    rx.recv_timeout(Duration::from_secs(60))
        .expect("writes are running");
    peer.kill();
    let err = writer.join().expect("no panic in the I/O thread");
    assert!(
        matches!(err, BackendError::Gone { .. } | BackendError::Io { .. }),
        "typed error: {err:?}"
    );
    let mut buf = [0u8; 512];
    assert!(backend.read_at(0, &mut buf).is_err(), "the peer is gone");
}

// ---------------------------------------------------------------------------
// The gateway against real clients
// ---------------------------------------------------------------------------

fn gateway(extra: Option<u64>) -> Gateway {
    let extra = extra.map(|cap| {
        Arc::new(MemoryBackend::new(cap, 512).expect("memory")) as Arc<dyn BlockBackend>
    });
    Gateway::start("127.0.0.1:0", 0, extra, ServerConfig::default()).expect("gateway")
}

fn uri(g: &Gateway, export: &str) -> String {
    format!("nbd://{}/{export}", g.server.local_addr())
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn qemu_io(target: &str, commands: &[String]) -> String {
    require("qemu-io");
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for c in commands {
        cmd.arg("-c").arg(c);
    }
    let out = run(cmd.arg(target));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("failed") && !text.contains("error") && !text.contains("Error"),
        "qemu-io reported a failure:\n{text}"
    );
    text
}

#[test]
fn interop_gateway_qemu_io_patterns() {
    let g = gateway(None);
    let names = g.export_names();
    for (i, name) in names.iter().take(3).enumerate() {
        let target = uri(&g, name);
        let p = 0x41 + i;
        let writes: Vec<String> = vec![
            format!("write -P {p:#x} 0 1M"),
            format!("write -P {:#x} 1M 64k", p + 16),
            "write -z 2M 256k".to_owned(),
            "discard 3M 64k".to_owned(),
            "flush".to_owned(),
            format!("write -P {:#x} -f 4M 4k", p + 32),
        ];
        qemu_io(&target, &writes);
        // A second session reads back and verifies.
        let text = qemu_io(
            &target,
            &[
                format!("read -P {p:#x} 0 1M"),
                format!("read -P {:#x} 1M 64k", p + 16),
                "read -P 0 2M 256k".to_owned(),
                format!("read -P {:#x} 4M 4k", p + 32),
                "aio_write -P 0x11 8M 64k".to_owned(),
                "aio_write -P 0x22 9M 64k".to_owned(),
                "aio_flush".to_owned(),
                "read -P 0x11 8M 64k".to_owned(),
                "read -P 0x22 9M 64k".to_owned(),
            ],
        );
        assert!(
            text.contains("read 1048576/1048576 bytes at offset 0"),
            "{text}"
        );
    }
}

#[test]
fn interop_gateway_nbdinfo_list() {
    require("nbdinfo");
    let g = gateway(None);
    let out = run(Command::new("nbdinfo")
        .arg("--list")
        .arg(format!("nbd://{}", g.server.local_addr())));
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(g.export_names().len(), 9, "three VMs with three vVols each");
    for name in g.export_names() {
        assert!(
            text.contains(&format!("export=\"{name}\"")),
            "{name} in:\n{text}"
        );
    }
    assert!(text.contains("base:allocation"), "{text}");
}

/// Deterministic pseudo-random bytes (xorshift).
fn random_file(path: &Path, len: usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        data.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, &data).expect("write random file");
}

const COPY_BYTES: u64 = 64 << 20;

#[test]
fn interop_gateway_nbdcopy_64mib_round_trip() {
    require("nbdcopy");
    let g = gateway(Some(COPY_BYTES));
    let export = g.export_names().last().cloned().expect("the 64 MiB vVol");
    let dir = scratch();
    let input = dir.path().join("in.bin");
    let output = dir.path().join("out.bin");
    random_file(&input, COPY_BYTES as usize);
    run(Command::new("nbdcopy").arg(&input).arg(uri(&g, &export)));
    std::fs::File::create(&output)
        .and_then(|f| f.set_len(COPY_BYTES))
        .expect("output file");
    run(Command::new("nbdcopy").arg(uri(&g, &export)).arg(&output));
    assert!(
        std::fs::read(&input).expect("in") == std::fs::read(&output).expect("out"),
        "nbdcopy round trip is not byte-identical"
    );
}

#[test]
fn interop_gateway_qemu_img_convert() {
    require("qemu-img");
    let g = gateway(Some(COPY_BYTES));
    let export = g.export_names().last().cloned().expect("the 64 MiB vVol");
    let dir = scratch();
    let input = dir.path().join("in.bin");
    let qcow2 = dir.path().join("in.qcow2");
    let output: PathBuf = dir.path().join("out.bin");
    random_file(&input, 8 << 20);
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&input)
        .arg(&qcow2));
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "qcow2", "-O", "raw"])
        .arg(&qcow2)
        .arg(uri(&g, &export)));
    run(Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "raw"])
        .arg(uri(&g, &export))
        .arg(&output));
    let back = std::fs::read(&output).expect("out");
    let sent = std::fs::read(&input).expect("in");
    assert_eq!(back.len() as u64, COPY_BYTES);
    assert!(back[..sent.len()] == sent[..], "converted data differs");
    assert!(back[sent.len()..].iter().all(|&b| b == 0), "tail is zeros");
}

#[test]
fn interop_gateway_garbage_closes_only_its_connection() {
    let g = gateway(None);
    let target = uri(&g, &g.export_names()[1]);
    require("qemu-io");
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "raw"]);
    for i in 0..16u64 {
        cmd.arg("-c")
            .arg(format!("write -P {:#x} {}M 1M", 0x30 + i, i));
    }
    for i in 0..16u64 {
        cmd.arg("-c")
            .arg(format!("read -P {:#x} {}M 1M", 0x30 + i, i));
    }
    let session = cmd
        .arg(&target)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-io");

    // Garbage during negotiation, and garbage after GO.
    let addr = g.server.local_addr();
    let mut early = TcpStream::connect(addr).expect("connect");
    early
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut hello = [0u8; 18];
    early.read_exact(&mut hello).expect("greeting");
    early.write_all(&[0xEE; 512]).expect("garbage");
    let mut sink = Vec::new();
    let _ = early.read_to_end(&mut sink);

    let late_export = g.export_names()[2].clone();
    let mut late = TcpStream::connect(addr).expect("connect");
    late.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    late.read_exact(&mut hello).expect("greeting");
    late.write_all(&1u32.to_be_bytes()).expect("flags");
    let mut opt = proto::IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&proto::OPT_EXPORT_NAME.to_be_bytes());
    opt.extend_from_slice(&(late_export.len() as u32).to_be_bytes());
    opt.extend_from_slice(late_export.as_bytes());
    late.write_all(&opt).expect("export name");
    let mut reply = [0u8; 10 + proto::EXPORT_NAME_PADDING];
    late.read_exact(&mut reply).expect("export reply");
    late.write_all(&[0x5A; 4096]).expect("garbage");
    let _ = late.read_to_end(&mut sink);

    let out = session.wait_with_output().expect("qemu-io");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(!text.contains("failed"), "{text}");
    assert_eq!(text.matches("read 1048576/1048576").count(), 16, "{text}");
    assert!(g.server.stats().failed >= 2, "{:?}", g.server.stats());
}

/// qemu-nbd on a Unix socket (`-k`): the client's Unix transport.
fn qemu_unix(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    require("qemu-nbd");
    let dir = scratch();
    let image = dir.path().join("disk.raw");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(capacity))
        .expect("raw image");
    let socket = dir.path().join("nbd.sock");
    let log = std::fs::File::create(dir.path().join("peer.log")).expect("peer log");
    let child = Command::new("qemu-nbd")
        .args(["-f", "raw", "-t", "-e", "16", "-x", "disk"])
        .arg("-k")
        .arg(&socket)
        .arg(&image)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn qemu-nbd");
    let peer = Peer {
        child: Some(child),
        daemon: None,
        port: 0,
        _dir: dir,
    };
    for _ in 0..400 {
        if std::os::unix::net::UnixStream::connect(&socket).is_ok() {
            let backend = NbdBackend::connect(
                NbdConfig::unix(&socket, "disk").with_logical_block_size(block_size),
            )
            .expect("connect over the Unix socket");
            return Arc::new(Served {
                backend,
                _guard: peer,
            });
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("qemu-nbd did not listen on {}", socket.display());
}

#[test]
fn interop_nbd_backend_qemu_nbd_unix_socket() {
    for case in [
        Case::RoundTrip,
        Case::AllocationAfterWrites,
        Case::ConcurrentWriters,
    ] {
        conf::run_case(case, qemu_unix, 512);
    }
}

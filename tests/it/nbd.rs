//! The NBD client against our own server over loopback: the backend
//! conformance suite (rows in `backend_conformance.rs`), negotiation edge
//! cases, hostile clients, reconnects, timeouts and generation checks.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use vvol::backend::{AllocationExtent, BackendError, BackendOp, BlockBackend, MemoryBackend};
use vvol::nbd::proto::{self, RequestHeader};
use vvol::nbd::{
    BackendExports, ExportCatalog, HostExports, NbdBackend, NbdConfig, NbdError, NbdServer,
    ServerConfig,
};
use vvol::testing::backend_conformance::Case;
use vvol::{BindContext, ControlPlane, UnbindContext, VvolSpec, VvolType};

use crate::backend_conformance::{self as conf, CAP};
use crate::support::bind_one;

/// An NBD backend together with what serves it; the server stops when the
/// backend is dropped (fields drop in order).
#[derive(Debug)]
pub(crate) struct Served<G: std::fmt::Debug + Send + Sync + 'static> {
    pub(crate) backend: NbdBackend,
    pub(crate) _guard: G,
}

impl<G: std::fmt::Debug + Send + Sync + 'static> BlockBackend for Served<G> {
    fn capacity_bytes(&self) -> u64 {
        self.backend.capacity_bytes()
    }
    fn logical_block_size(&self) -> u32 {
        self.backend.logical_block_size()
    }
    fn supports(&self, op: BackendOp) -> bool {
        self.backend.supports(op)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        self.backend.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8], fua: bool) -> Result<(), BackendError> {
        self.backend.write_at(offset, data, fua)
    }
    fn flush(&self) -> Result<(), BackendError> {
        self.backend.flush()
    }
    fn discard(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.backend.discard(offset, len)
    }
    fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BackendError> {
        self.backend.write_zeroes(offset, len)
    }
    fn allocation(&self, offset: u64, len: u64) -> Result<Vec<AllocationExtent>, BackendError> {
        self.backend.allocation(offset, len)
    }
    fn resize(&self, new_capacity_bytes: u64) -> Result<(), BackendError> {
        self.backend.resize(new_capacity_bytes)
    }
}

fn memory_server(capacity: u64, block_size: u32) -> NbdServer {
    memory_server_with(capacity, block_size, ServerConfig::default())
}

fn memory_server_with(capacity: u64, block_size: u32, config: ServerConfig) -> NbdServer {
    let disk = Arc::new(MemoryBackend::new(capacity, block_size).expect("memory backend"));
    let exports = BackendExports::new().with("disk", disk);
    NbdServer::start("127.0.0.1:0", Arc::new(exports), config).expect("server")
}

/// Like [`served_memory`], the server answering on the reading thread.
pub(crate) fn served_inline(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    let server = memory_server_with(
        capacity,
        block_size,
        ServerConfig::default().with_workers_per_connection(0),
    );
    let backend =
        NbdBackend::connect(config(server.local_addr(), "disk", block_size)).expect("connect");
    Arc::new(Served {
        backend,
        _guard: server,
    })
}

fn config(addr: SocketAddr, export: &str, block_size: u32) -> NbdConfig {
    NbdConfig::tcp(addr, export)
        .with_logical_block_size(block_size)
        .with_connections(2)
        .with_io_timeout(Duration::from_secs(20))
}

/// A [`MemoryBackend`] behind our server, reached with structured replies.
pub(crate) fn served_memory(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    let server = memory_server(capacity, block_size);
    let backend =
        NbdBackend::connect(config(server.local_addr(), "disk", block_size)).expect("connect");
    assert!(backend.structured_replies());
    assert_eq!(backend.connections(), 2, "our server allows multi-conn");
    Arc::new(Served {
        backend,
        _guard: server,
    })
}

/// Like [`served_memory`] with simple replies only.
pub(crate) fn served_simple(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    let server = memory_server(capacity, block_size);
    let backend = NbdBackend::connect(
        config(server.local_addr(), "disk", block_size).with_structured_replies(false),
    )
    .expect("connect");
    assert!(!backend.structured_replies());
    assert!(!backend.supports(BackendOp::Allocation));
    Arc::new(Served {
        backend,
        _guard: server,
    })
}

/// A fresh vVol in the quickstart topology, bound for host 0 and reached
/// through the router by [`HostExports`].
pub(crate) fn served_routed(capacity: u64, block_size: u32) -> Arc<dyn BlockBackend> {
    let (plane, topo) = vvol::testing::quickstart().expect("quickstart");
    let vvol = plane
        .create_vvol(
            topo.containers[0],
            VvolSpec::new(VvolType::Data, capacity).with_logical_block_size(block_size),
        )
        .expect("vvol");
    let handle = bind_one(&plane, topo.hosts[0], vvol, BindContext::Normal);
    let plane = Arc::new(plane);
    let exports = HostExports::new(Arc::clone(&plane), topo.hosts[0]);
    let server = NbdServer::start("127.0.0.1:0", Arc::new(exports), ServerConfig::default())
        .expect("server");
    let name = HostExports::export_name(handle);
    let backend =
        NbdBackend::connect(config(server.local_addr(), &name, block_size)).expect("connect");
    Arc::new(Served {
        backend,
        _guard: (server, plane),
    })
}

/// Every conformance case but allocation (which needs structured replies)
/// with simple replies.
#[test]
fn nbd_simple_replies_conformance() {
    let cases: [Case; 9] = [
        Case::FreshReadsAreZeros,
        Case::RoundTrip,
        Case::OutOfRange,
        Case::FuaWriteThenRead,
        Case::Flush,
        Case::WriteZeroesKeepsNeighbours,
        Case::DiscardReadsZerosOrOld,
        Case::ResizeGrowAndShrink,
        Case::ConcurrentWriters,
    ];
    for case in cases {
        conf::run_case(case, served_simple, 512);
    }
}

#[test]
fn nbd_list_and_unknown_export() {
    let server = memory_server(CAP, 512);
    let cfg = NbdConfig::tcp(server.local_addr(), "missing");
    assert_eq!(NbdBackend::list_exports(&cfg).expect("list"), ["disk"]);
    match NbdBackend::connect(cfg) {
        Err(NbdError::UnknownExport { export, .. }) => assert_eq!(export, "missing"),
        other => panic!("expected UnknownExport, got {other:?}"),
    }
}

#[test]
fn nbd_config_is_validated() {
    let addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
    for cfg in [
        NbdConfig::tcp(addr, "x").with_connections(0),
        NbdConfig::tcp(addr, "x").with_connections(vvol::nbd::MAX_CONNECTIONS + 1),
        NbdConfig::tcp(addr, "x").with_logical_block_size(1000),
        NbdConfig::tcp(addr, "x")
            .with_reconnect_attempts(vvol::nbd::MAX_RECONNECT_ATTEMPTS + 1, Duration::ZERO),
    ] {
        assert!(matches!(
            NbdBackend::connect(cfg),
            Err(NbdError::InvalidConfig { .. })
        ));
    }
}

#[test]
fn nbd_connect_refused_is_typed() {
    // Bind and drop a listener: nothing listens on that port any more.
    let addr = TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr");
    assert!(matches!(
        NbdBackend::connect(NbdConfig::tcp(addr, "x")),
        Err(NbdError::Connect { .. })
    ));
}

/// Opens a raw connection and negotiates `export` with structured replies,
/// returning the socket in transmission phase.
fn raw_session(addr: SocketAddr, export: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).expect("greeting");
    s.write_all(&3u32.to_be_bytes()).expect("flags");
    let mut sr = proto::IHAVEOPT.to_be_bytes().to_vec();
    sr.extend_from_slice(&proto::OPT_STRUCTURED_REPLY.to_be_bytes());
    sr.extend_from_slice(&0u32.to_be_bytes());
    s.write_all(&sr).expect("structured reply option");
    let mut go = (export.len() as u32).to_be_bytes().to_vec();
    go.extend_from_slice(export.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    let mut opt = proto::IHAVEOPT.to_be_bytes().to_vec();
    opt.extend_from_slice(&proto::OPT_GO.to_be_bytes());
    opt.extend_from_slice(&(go.len() as u32).to_be_bytes());
    opt.extend_from_slice(&go);
    s.write_all(&opt).expect("go");
    loop {
        let mut head = [0u8; 20];
        s.read_exact(&mut head).expect("reply");
        let kind = u32::from_be_bytes(head[12..16].try_into().expect("4"));
        let len = u32::from_be_bytes(head[16..20].try_into().expect("4"));
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).expect("payload");
        assert_eq!(kind & proto::REP_FLAG_ERROR, 0, "GO refused");
        let option = u32::from_be_bytes(head[8..12].try_into().expect("4"));
        if kind == proto::REP_ACK && option == proto::OPT_GO {
            return s;
        }
    }
}

/// Reads until EOF or error; true when the server closed the connection.
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match s.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

#[test]
fn nbd_hostile_requests_close_only_their_connection() {
    let server = memory_server(CAP, 512);
    let addr = server.local_addr();
    let good = NbdBackend::connect(config(addr, "disk", 512)).expect("connect");
    good.write_at(0, &[9u8; 4096], false).expect("write");

    // Garbage instead of a request header.
    let mut bad = raw_session(addr, "disk");
    bad.write_all(&[0xAB; 64]).expect("garbage");
    assert!(closed_by_server(&mut bad));

    // A write announcing more payload than the limit.
    let mut bad = raw_session(addr, "disk");
    let h = RequestHeader {
        flags: 0,
        command: proto::CMD_WRITE,
        cookie: 1,
        offset: 0,
        length: proto::MAX_REQUEST_BYTES + 1,
    };
    bad.write_all(&h.encode()).expect("header");
    assert!(closed_by_server(&mut bad));

    // A too-large read, unknown command and unknown flag get EINVAL, and the
    // connection stays usable.
    let mut odd = raw_session(addr, "disk");
    for (i, (command, flags, length)) in [
        (proto::CMD_READ, 0, proto::MAX_REQUEST_BYTES + 1),
        (99, 0, 0),
        (proto::CMD_READ, 1 << 9, 512),
        (proto::CMD_BLOCK_STATUS, 0, 512), // no meta context negotiated
    ]
    .into_iter()
    .enumerate()
    {
        let h = RequestHeader {
            flags,
            command,
            cookie: i as u64,
            offset: 0,
            length,
        };
        odd.write_all(&h.encode()).expect("header");
        let mut chunk = [0u8; 20];
        odd.read_exact(&mut chunk).expect("reply header");
        let len = u32::from_be_bytes(chunk[16..20].try_into().expect("4"));
        let mut body = vec![0u8; len as usize];
        odd.read_exact(&mut body).expect("body");
        assert_eq!(
            u16::from_be_bytes([chunk[6], chunk[7]]),
            proto::REPLY_TYPE_ERROR
        );
        assert_eq!(
            u32::from_be_bytes(body[0..4].try_into().expect("4")),
            proto::EINVAL
        );
    }

    let mut back = vec![0u8; 4096];
    good.read_at(0, &mut back)
        .expect("the good connection still works");
    assert_eq!(back, vec![9u8; 4096]);
    let stats = server.stats();
    assert!(stats.failed >= 2, "{stats:?}");
    assert!(stats.last_failure.is_some());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Arbitrary bytes in transmission phase never take the server down.
    #[test]
    fn nbd_arbitrary_transmission_bytes(garbage in proptest::collection::vec(any::<u8>(), 1..256)) {
        let server = memory_server(1 << 20, 512);
        let mut s = raw_session(server.local_addr(), "disk");
        let _ = s.write_all(&garbage);
        let _ = s.shutdown(std::net::Shutdown::Write);
        let _ = closed_by_server(&mut s);
        let good = NbdBackend::connect(config(server.local_addr(), "disk", 512)).expect("connect");
        good.write_at(512, &[1u8; 512], true).expect("write");
    }
}

#[test]
fn nbd_generation_check_after_unbind_and_rebind() {
    let (plane, topo) = vvol::testing::quickstart().expect("quickstart");
    let host = topo.hosts[0];
    let disk = topo.vms[0].data;
    let old = bind_one(&plane, host, disk, BindContext::Normal);
    let plane: Arc<ControlPlane> = Arc::new(plane);
    let exports = Arc::new(HostExports::new(Arc::clone(&plane), host));
    let server = NbdServer::start(
        "127.0.0.1:0",
        Arc::clone(&exports) as Arc<dyn ExportCatalog>,
        ServerConfig::default(),
    )
    .expect("server");
    let addr = server.local_addr();
    let client = NbdBackend::connect(
        NbdConfig::tcp(addr, HostExports::export_name(old))
            .with_reconnect_attempts(0, Duration::ZERO),
    )
    .expect("connect");
    client.write_at(0, &[5u8; 512], false).expect("write");

    plane
        .unbind(host, old, UnbindContext::Normal)
        .expect("unbind");
    let new = bind_one(&plane, host, disk, BindContext::Normal);
    assert_ne!(old, new);

    let mut buf = [0u8; 512];
    let err = client.read_at(0, &mut buf).expect_err("stale generation");
    let source = match &err {
        BackendError::Io { source, .. } => source,
        other => panic!("expected Io, got {other:?}"),
    };
    match source.get_ref().and_then(|e| e.downcast_ref::<NbdError>()) {
        Some(NbdError::Server { errno, .. }) => assert_eq!(*errno, proto::EIO),
        other => panic!("expected a server EIO, got {other:?}"),
    }

    // A new connection to the new export sees the data.
    assert_eq!(exports.list(), [HostExports::export_name(new)]);
    let fresh = NbdBackend::connect(NbdConfig::tcp(addr, HostExports::export_name(new)))
        .expect("connect to the new binding");
    fresh.read_at(0, &mut buf).expect("read");
    assert_eq!(buf, [5u8; 512]);
}

#[test]
fn nbd_reconnects_after_the_server_restarts() {
    let disk = Arc::new(MemoryBackend::new(CAP, 512).expect("memory"));
    let exports = Arc::new(BackendExports::new().with("disk", disk));
    let server = NbdServer::start(
        "127.0.0.1:0",
        Arc::clone(&exports) as Arc<dyn ExportCatalog>,
        ServerConfig::default(),
    )
    .expect("server");
    let addr = server.local_addr();
    let client = NbdBackend::connect(
        NbdConfig::tcp(addr, "disk").with_reconnect_attempts(50, Duration::from_millis(20)),
    )
    .expect("connect");
    client.write_at(0, &[3u8; 512], false).expect("write");
    server.shutdown();
    let again = NbdServer::start(addr, exports, ServerConfig::default()).expect("same port");
    let mut buf = [0u8; 512];
    client.read_at(0, &mut buf).expect("read after reconnect");
    assert_eq!(buf, [3u8; 512]);
    again.shutdown();

    // Nobody listens now: retries run out and the backend reports Gone.
    let err = client.read_at(0, &mut buf).expect_err("server gone");
    assert!(matches!(err, BackendError::Gone { .. }), "{err:?}");
}

/// A server that negotiates and then never answers. With `old_style` it
/// refuses `NBD_OPT_GO` and accepts `NBD_OPT_EXPORT_NAME` (with the zero
/// padding, as it offers no `NO_ZEROES`).
fn silent_server_with(old_style: bool) -> (SocketAddr, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let t = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut hello = proto::NBD_MAGIC.to_be_bytes().to_vec();
        hello.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
        let flags: u16 = if old_style { 1 } else { 3 };
        hello.extend_from_slice(&flags.to_be_bytes());
        s.write_all(&hello).expect("greeting");
        let mut flags = [0u8; 4];
        s.read_exact(&mut flags).expect("flags");
        loop {
            let mut head = [0u8; 16];
            if s.read_exact(&mut head).is_err() {
                return;
            }
            let opt = u32::from_be_bytes(head[8..12].try_into().expect("4"));
            let len = u32::from_be_bytes(head[12..16].try_into().expect("4"));
            let mut data = vec![0u8; len as usize];
            s.read_exact(&mut data).expect("option data");
            let reply = |kind: u32, data: &[u8]| {
                let mut r = proto::OPTION_REPLY_MAGIC.to_be_bytes().to_vec();
                r.extend_from_slice(&opt.to_be_bytes());
                r.extend_from_slice(&kind.to_be_bytes());
                r.extend_from_slice(&(data.len() as u32).to_be_bytes());
                r.extend_from_slice(data);
                r
            };
            if old_style && opt == proto::OPT_EXPORT_NAME {
                let mut reply = CAP.to_be_bytes().to_vec();
                reply.extend_from_slice(&1u16.to_be_bytes());
                reply.extend_from_slice(&[0u8; proto::EXPORT_NAME_PADDING]);
                s.write_all(&reply).expect("export name reply");
                break;
            }
            if opt == proto::OPT_GO && !old_style {
                let mut info = proto::INFO_EXPORT.to_be_bytes().to_vec();
                info.extend_from_slice(&CAP.to_be_bytes());
                info.extend_from_slice(&1u16.to_be_bytes());
                s.write_all(&reply(proto::REP_INFO, &info)).expect("info");
                s.write_all(&reply(proto::REP_ACK, &[])).expect("ack");
                break;
            }
            s.write_all(&reply(proto::REP_ERR_UNSUP, &[]))
                .expect("unsup");
        }
        // Swallow requests, answer none, until the client hangs up.
        let mut sink = [0u8; 4096];
        while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
    });
    (addr, t)
}

fn silent_server() -> (SocketAddr, std::thread::JoinHandle<()>) {
    silent_server_with(false)
}

#[test]
fn nbd_export_name_fallback_without_go() {
    let (addr, t) = silent_server_with(true);
    let client = NbdBackend::connect(
        NbdConfig::tcp(addr, "legacy").with_reconnect_attempts(0, Duration::ZERO),
    )
    .expect("connect through NBD_OPT_EXPORT_NAME");
    assert_eq!(client.capacity_bytes(), CAP);
    assert_eq!(client.logical_block_size(), 512);
    assert!(!client.structured_replies());
    assert!(!client.supports(BackendOp::Discard), "no TRIM flag");
    drop(client);
    t.join().expect("silent server");
}

#[test]
fn nbd_io_timeout_is_typed() {
    let (addr, t) = silent_server();
    let client = NbdBackend::connect(
        NbdConfig::tcp(addr, "x")
            .with_io_timeout(Duration::from_millis(300))
            .with_reconnect_attempts(0, Duration::ZERO),
    )
    .expect("connect");
    assert!(!client.structured_replies());
    let mut buf = [0u8; 512];
    let err = client.read_at(0, &mut buf).expect_err("no reply");
    match &err {
        BackendError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::TimedOut);
            assert!(matches!(
                source.get_ref().and_then(|e| e.downcast_ref::<NbdError>()),
                Some(NbdError::Timeout { .. })
            ));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    drop(client);
    t.join().expect("silent server");
}

#[test]
fn nbd_unix_socket_client() {
    // Our server is TCP only; bridge a Unix socket to it to reach the
    // client's Unix transport.
    let server = memory_server(CAP, 512);
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("nbd.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("unix bind");
    let tcp = server.local_addr();
    let bridge = std::thread::spawn(move || {
        let (u, _) = listener.accept().expect("accept");
        let t = TcpStream::connect(tcp).expect("tcp");
        let (mut u2, mut t2) = (u.try_clone().expect("clone"), t.try_clone().expect("clone"));
        let up = std::thread::spawn(move || {
            let mut u = u;
            let mut t = t;
            let _ = std::io::copy(&mut u, &mut t);
            let _ = t.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut t2, &mut u2);
        let _ = u2.shutdown(std::net::Shutdown::Both);
        up.join().expect("bridge");
    });
    let client = NbdBackend::connect(NbdConfig::unix(&path, "disk")).expect("unix connect");
    client.write_at(4096, &[8u8; 4096], true).expect("write");
    let mut back = vec![0u8; 4096];
    client.read_at(4096, &mut back).expect("read");
    assert_eq!(back, vec![8u8; 4096]);
    drop(client);
    bridge.join().expect("bridge thread");
}

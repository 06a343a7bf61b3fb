//! The NBD server's admission layer under hostile load, over real TCP on
//! loopback: an idle-connection flood, a trickling writer, connect/close
//! churn, per-host session limits, and memory held under the global budget
//! (measured as the process's own RSS).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use vvol::admission::{AdmissionConfig, BUFFER_CHUNK_BYTES};
use vvol::backend::{BlockBackend, MemoryBackend};
use vvol::nbd::proto::{self, RequestHeader};
use vvol::nbd::{
    BackendExports, Export, ExportCatalog, HostExports, NbdBackend, NbdConfig, NbdError, NbdServer,
    ServerConfig,
};
use vvol::{BindContext, VvolSpec, VvolType};

use crate::support::bind_one;

const MIB: u64 = 1 << 20;
/// Hang guard for every socket read and for polling loops; never a timing
/// assertion.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn memory_server(capacity: u64, config: ServerConfig) -> NbdServer {
    let disk = Arc::new(MemoryBackend::new(capacity, 512).expect("memory backend"));
    let exports = BackendExports::new().with("disk", disk);
    NbdServer::start("127.0.0.1:0", Arc::new(exports), config).expect("server")
}

fn client(addr: SocketAddr, export: &str) -> NbdConfig {
    NbdConfig::tcp(addr, export)
        .with_connections(1)
        .with_io_timeout(Duration::from_secs(30))
        .with_reconnect_attempts(0, Duration::ZERO)
}

/// A block whose every 8 bytes say which (tag, offset) it belongs to.
fn tagged(tag: u64, offset: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(&(tag ^ (offset + i).rotate_left(17)).to_le_bytes());
        i += 8;
    }
    v.truncate(len);
    v
}

/// Writes and reads back `rounds` tagged 64 KiB blocks; the first mismatch
/// or error is returned.
fn verified_io(b: &NbdBackend, tag: u64, rounds: u64) -> Result<(), String> {
    const BLOCK: usize = 64 << 10;
    let slots = b.capacity_bytes() / BLOCK as u64;
    for i in 0..rounds {
        let offset = (tag.wrapping_mul(7).wrapping_add(i) % slots) * BLOCK as u64;
        let data = tagged(tag, offset, BLOCK);
        b.write_at(offset, &data, i % 4 == 0)
            .map_err(|e| format!("write {i}: {e}"))?;
        let mut back = vec![0u8; BLOCK];
        b.read_at(offset, &mut back)
            .map_err(|e| format!("read {i}: {e}"))?;
        if back != data {
            return Err(format!("block {i} at {offset} came back different"));
        }
    }
    Ok(())
}

/// A TCP connection to `to` from the loopback source address `from`.
pub(crate) fn connect_from(from: std::net::Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::from((from, 0)))?;
    connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// Negotiates `export` on a raw socket with structured replies; returns the
/// socket in transmission phase.
fn raw_go(mut s: TcpStream, export: &str) -> TcpStream {
    s.set_read_timeout(Some(HANG_GUARD)).expect("timeout");
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello).expect("greeting");
    s.write_all(&3u32.to_be_bytes()).expect("flags");
    let option = |opt: u32, data: &[u8]| {
        let mut v = proto::IHAVEOPT.to_be_bytes().to_vec();
        v.extend_from_slice(&opt.to_be_bytes());
        v.extend_from_slice(&(data.len() as u32).to_be_bytes());
        v.extend_from_slice(data);
        v
    };
    s.write_all(&option(proto::OPT_STRUCTURED_REPLY, &[]))
        .expect("structured");
    let mut go = (export.len() as u32).to_be_bytes().to_vec();
    go.extend_from_slice(export.as_bytes());
    go.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&option(proto::OPT_GO, &go)).expect("go");
    loop {
        let mut head = [0u8; 20];
        s.read_exact(&mut head).expect("option reply");
        let opt = u32::from_be_bytes(head[8..12].try_into().expect("4"));
        let kind = u32::from_be_bytes(head[12..16].try_into().expect("4"));
        let len = u32::from_be_bytes(head[16..20].try_into().expect("4"));
        let mut data = vec![0u8; len as usize];
        s.read_exact(&mut data).expect("option payload");
        assert_eq!(kind & proto::REP_FLAG_ERROR, 0, "option {opt} refused");
        if opt == proto::OPT_GO && kind == proto::REP_ACK {
            return s;
        }
    }
}

/// Reads one structured reply chunk: (cookie, error code or 0).
fn read_reply(s: &mut TcpStream) -> (u64, u32) {
    let mut head = [0u8; 20];
    s.read_exact(&mut head).expect("reply header");
    let kind = u16::from_be_bytes([head[6], head[7]]);
    let cookie = u64::from_be_bytes(head[8..16].try_into().expect("8"));
    let len = u32::from_be_bytes(head[16..20].try_into().expect("4"));
    let mut body = vec![0u8; len as usize];
    s.read_exact(&mut body).expect("reply body");
    if kind == proto::REPLY_TYPE_ERROR {
        (
            cookie,
            u32::from_be_bytes(body[0..4].try_into().expect("4")),
        )
    } else {
        (cookie, 0)
    }
}

fn write_header(cookie: u64, offset: u64, length: u32) -> [u8; RequestHeader::SIZE] {
    RequestHeader {
        flags: 0,
        command: proto::CMD_WRITE,
        cookie,
        offset,
        length,
    }
    .encode()
}

/// Polls `done` until true or the hang guard passes.
#[track_caller]
fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < HANG_GUARD, "hang guard: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The reproduction, worse: 300 connections from the client's own
/// address that never send a byte, then a legitimate client lists, connects
/// and does verified I/O while all 300 are still open. Before the
/// admission layer the 65th idle connection already locked everyone out.
#[test]
fn nbd_idle_flood_does_not_lock_out_a_client() {
    let server = memory_server(8 * MIB, ServerConfig::default());
    let addr = server.local_addr();
    let idle: Vec<TcpStream> = (0..300)
        .map(|i| TcpStream::connect(addr).unwrap_or_else(|e| panic!("idle {i}: {e}")))
        .collect();
    // Every idle connection has been through the accept loop before the
    // legitimate client's (accept order), so the flood is at its worst.
    let names = NbdBackend::list_exports(&client(addr, "")).expect("list during the flood");
    assert_eq!(names, ["disk"]);
    let good = NbdBackend::connect(client(addr, "disk")).expect("connect during the flood");
    verified_io(&good, 1, 32).expect("verified I/O during the flood");
    let stats = server.stats();
    let per_peer = AdmissionConfig::default().max_handshakes_per_peer as u64;
    assert!(stats.admission.handshaking <= per_peer, "{stats:?}");
    assert!(
        stats.admission.handshake_evictions >= 300 - per_peer,
        "{stats:?}"
    );
    assert_eq!(stats.admission.established, 1, "{stats:?}");
    assert_eq!(idle.len(), 300, "the flood is still connected");
    drop(good);
    drop(idle);
}

/// Idle connections from other addresses fill only their own share of the
/// pool; the handshake deadline then closes what is left of them.
#[test]
fn nbd_idle_flood_from_other_peers_and_the_deadline() {
    let config = ServerConfig::default().with_handshake_deadline(Duration::from_millis(300));
    let server = memory_server(8 * MIB, config);
    let addr = server.local_addr();
    let idle: Vec<TcpStream> = (0..4u8)
        .flat_map(|peer| {
            (0..50).map(move |_| {
                connect_from(std::net::Ipv4Addr::new(127, 0, 0, 10 + peer), addr).expect("idle")
            })
        })
        .collect();
    let good = NbdBackend::connect(client(addr, "disk")).expect("connect during the flood");
    verified_io(&good, 2, 16).expect("verified I/O");
    // The survivors of the flood reach their deadline.
    wait_for("handshake deadline", || {
        server.stats().admission.handshake_timeouts >= 1
    });
    wait_for("pool empty", || server.stats().admission.handshaking == 0);
    verified_io(&good, 3, 4).expect("I/O after the deadline");
    drop(idle);
}

/// A writer announcing a 32 MiB write and trickling it holds no budget (it
/// passes the connection budget: refused with EOVERFLOW once its payload is
/// skipped), and one trickling a write within its budget holds at most that
/// budget, while another client's verified I/O goes on.
#[test]
fn nbd_trickling_writers_hold_at_most_their_budget() {
    let budget = MIB;
    let config = ServerConfig::default()
        .with_admission(AdmissionConfig::default().with_budgets(budget, 4 * budget));
    let server = memory_server(8 * MIB, config);
    let addr = server.local_addr();
    let mut big = raw_go(TcpStream::connect(addr).expect("connect"), "disk");
    let mut small = raw_go(TcpStream::connect(addr).expect("connect"), "disk");
    big.write_all(&write_header(1, 0, proto::MAX_REQUEST_BYTES))
        .expect("big header");
    small
        .write_all(&write_header(2, 4 * MIB, budget as u32))
        .expect("small header");
    let payload = tagged(9, 4 * MIB, budget as usize);
    let good = NbdBackend::connect(client(addr, "disk")).expect("good client");
    // Trickle 64 KiB to each in 4 KiB pieces while the good client works.
    for (i, piece) in payload[..64 << 10].chunks(4096).enumerate() {
        big.write_all(piece).expect("trickle big");
        small.write_all(piece).expect("trickle small");
        verified_io(&good, 10 + i as u64, 1).expect("I/O beside the tricklers");
        // The small writer's budget plus the good client's one request
        // (64 KiB, a whole buffer chunk reserved).
        let a = server.stats().admission;
        assert!(
            a.budget_in_use_bytes <= budget + BUFFER_CHUNK_BYTES as u64,
            "{a:?}"
        );
    }
    assert_eq!(server.stats().admission.oversize_refusals, 1);
    wait_for("only the small writer holds budget", || {
        server.stats().admission.budget_in_use_bytes == budget
    });
    // Finish both; the big one is answered EOVERFLOW, the small one lands.
    small.write_all(&payload[64 << 10..]).expect("small rest");
    assert_eq!(read_reply(&mut small), (2, 0));
    let rest = vec![0u8; proto::MAX_REQUEST_BYTES as usize - (64 << 10)];
    big.write_all(&rest).expect("big rest");
    assert_eq!(read_reply(&mut big), (1, proto::EOVERFLOW));
    let mut back = vec![0u8; budget as usize];
    good.read_at(4 * MIB, &mut back)
        .expect("read the small write");
    assert!(back == payload, "the small trickled write landed whole");
    verified_io(&good, 99, 8).expect("I/O after");
    wait_for("budget returned", || {
        server.stats().admission.budget_in_use_bytes == 0
    });
}

/// The churning peer's address: its bursts fill only its own share of the
/// handshake pool. (From the client's own address a burst can evict a
/// client that has not spoken yet: the pool cannot tell them apart.)
const CHURN_PEER: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

/// Bursts of 100 connections from another peer address, opened and closed
/// as fast as possible, while a client reconnects and does verified I/O
/// again and again (before the admission layer a burst past 64 refused it).
#[test]
fn nbd_connect_close_churn_beside_a_client() {
    let server = memory_server(8 * MIB, ServerConfig::default());
    let addr = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let churned = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(2));
    let churn = {
        let (stop, churned, ready) = (stop.clone(), churned.clone(), ready.clone());
        std::thread::spawn(move || {
            let mut first = true;
            while !stop.load(Ordering::Relaxed) {
                let burst: Vec<TcpStream> = (0..100)
                    .filter_map(|_| connect_from(CHURN_PEER, addr).ok())
                    .collect();
                churned.fetch_add(burst.len() as u64, Ordering::Relaxed);
                if first {
                    ready.wait();
                    first = false;
                }
                drop(burst);
            }
        })
    };
    ready.wait();
    for round in 0..20 {
        let good = NbdBackend::connect(client(addr, "disk"))
            .unwrap_or_else(|e| panic!("connect in round {round} during the churn: {e}"));
        verified_io(&good, 100 + round, 4).unwrap_or_else(|e| panic!("round {round}: {e}"));
    }
    stop.store(true, Ordering::Relaxed);
    churn.join().expect("churn thread");
    assert!(churned.load(Ordering::Relaxed) >= 100);
    wait_for("churn cleaned up", || {
        let a = server.stats().admission;
        a.handshaking == 0 && a.established == 0
    });
}

/// Two hosts' bindings served by one server; each export counts against
/// its host.
#[derive(Debug)]
struct TwoHosts(HostExports, HostExports);

impl ExportCatalog for TwoHosts {
    fn list(&self) -> Vec<String> {
        let mut names = self.0.list();
        names.extend(self.1.list());
        names
    }

    fn open(&self, name: &str) -> Option<Export> {
        self.0.open(name).or_else(|| self.1.open(name))
    }
}

/// One host at its session limit is refused with `NBD_REP_ERR_POLICY`
/// while another host connects and does I/O; a freed session makes room.
#[test]
fn nbd_host_at_its_session_limit_is_refused_another_is_not() {
    let (plane, topo) = vvol::testing::quickstart().expect("quickstart");
    let vvol = |_: usize| {
        plane
            .create_vvol(topo.containers[0], VvolSpec::new(VvolType::Data, 4 * MIB))
            .expect("vvol")
    };
    let (va, vb) = (vvol(0), vvol(1));
    let ha = bind_one(&plane, topo.hosts[0], va, BindContext::Normal);
    let hb = bind_one(&plane, topo.hosts[1], vb, BindContext::Normal);
    let plane = Arc::new(plane);
    let catalog = TwoHosts(
        HostExports::new(Arc::clone(&plane), topo.hosts[0]),
        HostExports::new(Arc::clone(&plane), topo.hosts[1]),
    );
    let config =
        ServerConfig::default().with_admission(AdmissionConfig::default().with_sessions(64, 64, 2));
    let server = NbdServer::start("127.0.0.1:0", Arc::new(catalog), config).expect("server");
    let addr = server.local_addr();
    let (name_a, name_b) = (HostExports::export_name(ha), HostExports::export_name(hb));
    let a1 = NbdBackend::connect(client(addr, &name_a)).expect("a1");
    let a2 = NbdBackend::connect(client(addr, &name_a)).expect("a2");
    match NbdBackend::connect(client(addr, &name_a)) {
        Err(NbdError::OptionRefused { reply, message, .. }) => {
            assert_eq!(reply, proto::REP_ERR_POLICY);
            assert!(message.contains("host"), "{message}");
        }
        other => panic!("a third session of host a: {other:?}"),
    }
    let b = NbdBackend::connect(client(addr, &name_b)).expect("host b is not limited by a");
    verified_io(&b, 7, 8).expect("host b I/O");
    verified_io(&a1, 8, 4).expect("host a's sessions go on");
    let a = server.stats().admission;
    assert_eq!(a.refused_sessions_per_host, 1, "{a:?}");
    assert_eq!(a.established, 3, "{a:?}");
    drop(a2);
    wait_for("a2 gone", || server.stats().admission.established == 2);
    let a3 = NbdBackend::connect(client(addr, &name_a)).expect("room again for host a");
    verified_io(&a3, 9, 2).expect("a3 I/O");
}

const RSS_CHILD: &str = "VVOL_ADMISSION_RSS_CHILD";

/// The process's resident set, in bytes (`VmRSS` of /proc/self/status).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// The child side of [`nbd_memory_stays_under_the_global_budget`] (does
/// nothing unless the parent set its environment, so other tests' memory
/// does not blur the measurement).
#[test]
fn rss_child() {
    if std::env::var(RSS_CHILD).is_err() {
        return;
    }
    const CLIENTS: usize = 32;
    let budget = 4 * MIB;
    let global = 16 * MIB;
    let config = ServerConfig::default()
        .with_workers_per_connection(0)
        .with_admission(
            AdmissionConfig::default()
                .with_sessions(64, 64, 64)
                .with_budgets(budget, global)
                .with_budget_wait(HANG_GUARD),
        );
    let server = memory_server(budget, config);
    let addr = server.local_addr();
    let payload = Arc::new(tagged(5, 0, budget as usize));
    // Touch everything the measurement should not count: the backend's
    // pages (every client writes offset 0), the payload, one server thread.
    let warm = NbdBackend::connect(client(addr, "disk")).expect("warm");
    warm.write_at(0, &payload, true).expect("warm write");
    drop(warm);
    let sockets: Vec<TcpStream> = (0..CLIENTS)
        .map(|_| raw_go(TcpStream::connect(addr).expect("connect"), "disk"))
        .collect();
    let baseline = rss_bytes();
    // Each client sends all of its 4 MiB write but the last byte: the server
    // holds what it took in until the request completes.
    let writers: Vec<_> = sockets
        .iter()
        .map(|s| {
            let (mut s, payload) = (s.try_clone().expect("clone"), Arc::clone(&payload));
            std::thread::spawn(move || {
                s.write_all(&write_header(1, 0, budget as u32))?;
                s.write_all(&payload[..payload.len() - 1])
            })
        })
        .collect();
    let mut peak = baseline;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        peak = peak.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = server.stats().admission;
    // Release them: the last bytes, then every write is answered.
    for s in &sockets {
        (&*s)
            .write_all(&payload[payload.len() - 1..])
            .expect("last byte");
    }
    for w in writers {
        w.join().expect("writer").expect("payload sent");
    }
    for s in &sockets {
        let mut s = s.try_clone().expect("clone");
        assert_eq!(
            read_reply(&mut s),
            (1, 0),
            "every write completes in the end"
        );
        peak = peak.max(rss_bytes());
    }
    let grown = peak.saturating_sub(baseline);
    println!(
        "RSS baseline {baseline} peak {peak} grown {grown} budget_peak {} waits {}",
        stats.budget_peak_bytes, stats.budget_waits
    );
    assert!(stats.budget_peak_bytes <= global, "{stats:?}");
    assert!(stats.buffer_bytes <= global, "{stats:?}");
    assert!(
        stats.budget_waits >= 1,
        "the budget made requests wait: {stats:?}"
    );
    // 32 clients x 4 MiB = 128 MiB without a global budget; with it, the
    // budget plus slack for thread stacks and allocator overhead.
    let bound = global + 24 * MIB;
    assert!(grown <= bound, "RSS grew by {grown} bytes, bound {bound}");
    println!("RSS_CHILD_OK");
}

/// 32 clients each send a 4 MiB write but its last byte; with a 16 MiB
/// global budget the server's RSS grows by the budget plus slack, not by
/// 128 MiB. Runs in a child process so that no other test's memory counts.
#[test]
fn nbd_memory_stays_under_the_global_budget() {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "nbd_admission::rss_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RSS_CHILD, "1")
        .output()
        .expect("child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("RSS_CHILD_OK"),
        "child failed:\n{stdout}\n{stderr}"
    );
}

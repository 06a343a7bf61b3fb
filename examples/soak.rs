//! Soak: well-behaved NBD clients doing verified I/O beside hostile ones,
//! all on loopback, against one in-process `NbdServer`.
//!
//! ```text
//! cargo run --release --example soak -- --secs 60 --good 4 --hostile 16
//! ```
//!
//! First a baseline of the good clients alone (a quarter of `--secs`, at
//! least 5 s), then `--secs` with the hostile clients too. Each good client
//! writes tagged blocks to its own region and reads them back (and re-reads
//! an older block), so a lost or misdirected write is a corrupted block.
//! Hostile clients, each from its own 127.0.0.x address, cycle through:
//! garbage bytes, idle connections, slow handshakes, half-written requests,
//! oversized writes and disconnects in the middle of a reply. Prints errors,
//! corrupted blocks, p50/p99 latency of the good clients' I/O in both runs,
//! the server's admission counters and the peak RSS; exits 1 on any error
//! or corrupted block.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vvol::MemoryBackend;
use vvol::backend::BlockBackend;
use vvol::nbd::proto::{self, RequestHeader};
use vvol::nbd::{BackendExports, NbdBackend, NbdConfig, NbdServer, ServerConfig};

const DISK_BYTES: u64 = 256 << 20;
const BLOCK: usize = 16 << 10;

fn usage() -> ! {
    eprintln!("usage: soak --secs <n> --good <n> --hostile <m>");
    std::process::exit(2)
}

#[derive(Debug, Default)]
struct GoodResult {
    ops: u64,
    errors: Vec<String>,
    corrupted: u64,
    latencies_us: Vec<u64>,
}

fn tagged(tag: u64, len: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(len);
    let mut i = 0u64;
    while v.len() < len {
        v.extend_from_slice(&(tag ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).to_le_bytes());
        i += 1;
    }
    v
}

/// One good client: its own region, tagged blocks, every write read back.
fn good_client(addr: SocketAddr, index: u64, clients: u64, stop: &AtomicBool) -> GoodResult {
    let mut r = GoodResult::default();
    let config = NbdConfig::tcp(addr, "disk")
        .with_connections(1)
        .with_io_timeout(Duration::from_secs(30));
    let backend = match NbdBackend::connect(config) {
        Ok(b) => b,
        Err(e) => {
            r.errors.push(format!("client {index}: connect: {e}"));
            return r;
        }
    };
    let region = DISK_BYTES / clients;
    let blocks = region / BLOCK as u64;
    let base = index * region;
    let mut written: Vec<Option<u64>> = vec![None; blocks as usize];
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let slot = seq.wrapping_mul(2_654_435_761) % blocks;
        let offset = base + slot * BLOCK as u64;
        let tag = (index << 48) | seq;
        let data = tagged(tag, BLOCK);
        let start = Instant::now();
        if let Err(e) = backend.write_at(offset, &data, seq.is_multiple_of(8)) {
            r.errors
                .push(format!("client {index}: write at {offset}: {e}"));
            break;
        }
        let mut back = vec![0u8; BLOCK];
        if let Err(e) = backend.read_at(offset, &mut back) {
            r.errors
                .push(format!("client {index}: read at {offset}: {e}"));
            break;
        }
        r.latencies_us.push(start.elapsed().as_micros() as u64);
        if back != data {
            r.corrupted += 1;
        }
        written[slot as usize] = Some(tag);
        // An older block still holds what was last written there.
        let old = (slot + blocks / 2) % blocks;
        if let Some(old_tag) = written[old as usize] {
            let mut back = vec![0u8; BLOCK];
            match backend.read_at(base + old * BLOCK as u64, &mut back) {
                Ok(()) if back == tagged(old_tag, BLOCK) => {}
                Ok(()) => r.corrupted += 1,
                Err(e) => {
                    r.errors.push(format!("client {index}: re-read: {e}"));
                    break;
                }
            }
        }
        r.ops += 1;
    }
    r
}

fn connect_from(from: Ipv4Addr, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, bind, connect, socket};
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None)?;
    bind(&fd, &SocketAddr::from((from, 0)))?;
    connect(&fd, &to)?;
    let s = TcpStream::from(fd);
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    Ok(s)
}

fn option(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut v = proto::IHAVEOPT.to_be_bytes().to_vec();
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Negotiates the export with structured replies (errors are the peer's).
fn go(s: &mut TcpStream) -> std::io::Result<()> {
    let mut hello = [0u8; 18];
    s.read_exact(&mut hello)?;
    s.write_all(&3u32.to_be_bytes())?;
    s.write_all(&option(proto::OPT_STRUCTURED_REPLY, &[]))?;
    let mut data = 4u32.to_be_bytes().to_vec();
    data.extend_from_slice(b"disk");
    data.extend_from_slice(&0u16.to_be_bytes());
    s.write_all(&option(proto::OPT_GO, &data))?;
    loop {
        let mut head = [0u8; 20];
        s.read_exact(&mut head)?;
        let opt = u32::from_be_bytes([head[8], head[9], head[10], head[11]]);
        let kind = u32::from_be_bytes([head[12], head[13], head[14], head[15]]);
        let len = u32::from_be_bytes([head[16], head[17], head[18], head[19]]);
        let mut skip = vec![0u8; len.min(1 << 16) as usize];
        s.read_exact(&mut skip)?;
        if kind & proto::REP_FLAG_ERROR != 0 {
            return Err(std::io::Error::other("GO refused"));
        }
        if opt == proto::OPT_GO && kind == proto::REP_ACK {
            return Ok(());
        }
    }
}

fn header(command: u16, offset: u64, length: u32) -> [u8; RequestHeader::SIZE] {
    RequestHeader {
        flags: 0,
        command,
        cookie: 7,
        offset,
        length,
    }
    .encode()
}

/// Sleeps up to `d` in small steps, returning early when stopping.
fn nap(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One hostile behaviour; every error is expected (the server may close).
fn hostile_once(
    kind: u64,
    from: Ipv4Addr,
    addr: SocketAddr,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut s = connect_from(from, addr)?;
    match kind % 6 {
        0 => {
            // Garbage instead of the client flags.
            let junk: Vec<u8> = (0..1024u32).map(|i| (i * 31 + kind as u32) as u8).collect();
            s.write_all(&junk)?;
            let _ = s.read(&mut [0u8; 64])?;
        }
        1 => nap(Duration::from_secs(8), stop), // idle until the deadline
        2 => {
            // Slow handshake: one byte of the flags every 400 ms.
            let mut hello = [0u8; 18];
            s.read_exact(&mut hello)?;
            for b in 3u32.to_be_bytes() {
                s.write_all(&[b])?;
                nap(Duration::from_millis(400), stop);
            }
            for b in option(proto::OPT_LIST, &[]) {
                s.write_all(&[b])?;
                nap(Duration::from_millis(400), stop);
            }
        }
        3 => {
            // Half-written request: 1 MiB announced, 100 KiB sent, stall.
            go(&mut s)?;
            s.write_all(&header(proto::CMD_WRITE, 0, 1 << 20))?;
            s.write_all(&vec![0xEE; 100 << 10])?;
            nap(Duration::from_secs(3), stop);
        }
        4 => {
            // Disconnect in the middle of a 4 MiB read's reply.
            go(&mut s)?;
            s.write_all(&header(proto::CMD_READ, 0, 4 << 20))?;
            let mut some = [0u8; 100];
            s.read_exact(&mut some)?;
        }
        _ => {
            // An oversized write, a little of it, then gone.
            go(&mut s)?;
            s.write_all(&header(proto::CMD_WRITE, 0, proto::MAX_REQUEST_BYTES))?;
            s.write_all(&vec![0xAB; 256 << 10])?;
        }
    }
    Ok(())
}

/// Peak RSS of this process (VmHWM), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Run {
    results: Vec<GoodResult>,
    hostile_attempts: u64,
}

fn run(addr: SocketAddr, secs: u64, good: u64, hostile: u64) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let attempts = Arc::new(AtomicU64::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for i in 0..good {
        let (stop, results) = (Arc::clone(&stop), Arc::clone(&results));
        threads.push(std::thread::spawn(move || {
            let r = good_client(addr, i, good, &stop);
            results.lock().unwrap_or_else(|p| p.into_inner()).push(r);
        }));
    }
    for j in 0..hostile {
        let (stop, attempts) = (Arc::clone(&stop), Arc::clone(&attempts));
        threads.push(std::thread::spawn(move || {
            let from = Ipv4Addr::new(127, 0, 1, 1 + (j % 200) as u8);
            let mut kind = j;
            while !stop.load(Ordering::Relaxed) {
                let _ = hostile_once(kind, from, addr, &stop);
                attempts.fetch_add(1, Ordering::Relaxed);
                kind += 1;
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|p| p.into_inner()));
    Run {
        results,
        hostile_attempts: attempts.load(Ordering::Relaxed),
    }
}

fn report(name: &str, run: &Run) -> (u64, u64) {
    let mut lat: Vec<u64> = run
        .results
        .iter()
        .flat_map(|r| r.latencies_us.iter().copied())
        .collect();
    lat.sort_unstable();
    let ops: u64 = run.results.iter().map(|r| r.ops).sum();
    let errors: u64 = run.results.iter().map(|r| r.errors.len() as u64).sum();
    let corrupted: u64 = run.results.iter().map(|r| r.corrupted).sum();
    println!(
        "{name}: good ops {ops}, errors {errors}, corrupted blocks {corrupted}, write+read p50 {} us, p99 {} us, hostile connections {}",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        run.hostile_attempts
    );
    for r in &run.results {
        for e in &r.errors {
            println!("  error: {e}");
        }
    }
    (errors, corrupted + u64::from(ops == 0))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut secs, mut good, mut hostile) = (60u64, 4u64, 16u64);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| usage());
        match arg.as_str() {
            "--secs" => secs = value,
            "--good" => good = value,
            "--hostile" => hostile = value,
            _ => usage(),
        }
    }
    if good == 0 || secs == 0 {
        usage();
    }
    let disk = Arc::new(MemoryBackend::new(DISK_BYTES, 512)?);
    let exports = BackendExports::new().with("disk", disk as Arc<dyn BlockBackend>);
    let server = NbdServer::start("127.0.0.1:0", Arc::new(exports), ServerConfig::default())?;
    let addr = server.local_addr();
    let baseline_secs = (secs / 4).max(5);
    println!(
        "soak: {good} good clients, baseline {baseline_secs} s, then {secs} s with {hostile} hostile clients, server {addr}"
    );
    let baseline = run(addr, baseline_secs, good, 0);
    let (e1, c1) = report("baseline (good only)", &baseline);
    let loaded = run(addr, secs, good, hostile);
    let (e2, c2) = report("with hostile clients", &loaded);
    let stats = server.stats();
    println!(
        "server: accepted {}, refused {}, failed {}",
        stats.accepted, stats.refused, stats.failed
    );
    println!("admission: {:?}", stats.admission);
    println!("peak RSS: {} MiB", peak_rss() >> 20);
    server.shutdown();
    if e1 + e2 + c1 + c2 > 0 {
        println!("FAILED: errors or corrupted blocks");
        std::process::exit(1);
    }
    println!("ok");
    Ok(())
}

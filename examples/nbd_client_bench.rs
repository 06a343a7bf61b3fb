//! Measures `NbdBackend` IOPS: `depth` threads share one connection, each
//! issuing 4 KiB requests one after another, so `depth` requests are in
//! flight (like `qemu-img bench -d depth`). Used by `scripts/nbd-bench`.
//!
//! ```text
//! cargo run --release --example nbd_client_bench -- --connect 127.0.0.1:10809 --export disk [--count 100000] [--depth 16] [--write]
//! ```
//!
//! Prints the IOPS as a single number.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use vvol::BlockBackend;
use vvol::nbd::{NbdBackend, NbdConfig};

const BLOCK: u64 = 4096;

fn usage() -> ! {
    eprintln!(
        "usage: nbd_client_bench --connect <addr:port> --export <name> [--count N] [--depth D] [--write]"
    );
    std::process::exit(2)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (mut addr, mut export, mut count, mut depth, mut write) =
        (None::<SocketAddr>, String::new(), 100_000u64, 16u64, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--connect" => addr = Some(value().parse()?),
            "--export" => export = value(),
            "--count" => count = value().parse()?,
            "--depth" => depth = value().parse::<u64>()?.clamp(1, 256),
            "--write" => write = true,
            _ => usage(),
        }
    }
    let addr = addr.unwrap_or_else(|| usage());
    let backend = Arc::new(NbdBackend::connect(
        NbdConfig::tcp(addr, export).with_logical_block_size(512),
    )?);
    let blocks = backend.capacity_bytes() / BLOCK;
    let per_thread = count / depth;
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<(), vvol::BackendError> {
        let workers: Vec<_> = (0..depth)
            .map(|t| {
                let backend = Arc::clone(&backend);
                scope.spawn(move || -> Result<(), vvol::BackendError> {
                    let mut buf = vec![0x5Au8; BLOCK as usize];
                    for i in 0..per_thread {
                        let offset = ((i * depth + t) % blocks) * BLOCK;
                        if write {
                            backend.write_at(offset, &buf, false)?;
                        } else {
                            backend.read_at(offset, &mut buf)?;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for w in workers {
            w.join().expect("bench thread")?;
        }
        Ok(())
    })?;
    let secs = start.elapsed().as_secs_f64();
    println!("{}", ((per_thread * depth) as f64 / secs).round());
    Ok(())
}

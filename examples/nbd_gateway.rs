//! Serves the quickstart topology's vVols over NBD, acting as one host.
//!
//! ```text
//! cargo run --example nbd_gateway -- --listen 127.0.0.1:10809 [--host 0] [--backing-file PATH] [--workers N]
//! ```
//!
//! On start it binds, for the chosen host (0 = esx-01, 1 = esx-02), every
//! vVol of the quickstart VMs vm-a, vm-b and vm-c (config, data, swap) and
//! prints one line per export, named `<pe-id>:<secondary-id>`, then `ready`. With
//! `--backing-file`, an extra Data vVol backed by that existing file
//! (`FileBackend`, 512-byte blocks, size a multiple of 1 MiB) is bound too and
//! printed last. `--workers` sets the worker threads per connection; the
//! default 0 answers each request on the connection's reading thread, which
//! is fastest for the memory and page-cache backends used here (backends that
//! block want a few workers). All I/O goes through the router. Stop it with
//! Ctrl-C.
//!
//! Admission limits (defaults from `vvol::admission`): `--max-handshakes N`,
//! `--max-handshakes-per-peer N`, `--handshake-deadline-ms MS`,
//! `--max-sessions N`, `--max-sessions-per-peer N`,
//! `--max-sessions-per-host N`, `--idle-timeout-secs S` (off unless given),
//! `--connection-budget-kib K`, `--global-budget-mib M`,
//! `--budget-wait-ms MS`.

use std::sync::Arc;

use std::time::Duration;

use vvol::admission::AdmissionConfig;
use vvol::nbd::{Gateway, ServerConfig};
use vvol::{FileBackend, backend::FileBackendOptions};

fn usage() -> ! {
    eprintln!(
        "usage: nbd_gateway --listen <addr:port> [--host <index|name>] [--backing-file <path>] [--workers <n>]\n\
         \x20      [--max-handshakes <n>] [--max-handshakes-per-peer <n>] [--handshake-deadline-ms <ms>]\n\
         \x20      [--max-sessions <n>] [--max-sessions-per-peer <n>] [--max-sessions-per-host <n>]\n\
         \x20      [--idle-timeout-secs <s>] [--connection-budget-kib <k>] [--global-budget-mib <m>]\n\
         \x20      [--budget-wait-ms <ms>]"
    );
    std::process::exit(2)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut listen = None;
    let mut host = "0".to_owned();
    let mut backing = None;
    let mut workers = None;
    let mut admission = AdmissionConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = || -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage())
        };
        let a = &mut admission;
        match arg.as_str() {
            "--max-handshakes" => a.max_handshakes = number() as usize,
            "--max-handshakes-per-peer" => a.max_handshakes_per_peer = number() as usize,
            "--handshake-deadline-ms" => a.handshake_deadline = Duration::from_millis(number()),
            "--max-sessions" => a.max_sessions = number() as usize,
            "--max-sessions-per-peer" => a.max_sessions_per_peer = number() as usize,
            "--max-sessions-per-host" => a.max_sessions_per_host = number() as usize,
            "--idle-timeout-secs" => a.idle_timeout = Some(Duration::from_secs(number())),
            "--connection-budget-kib" => a.connection_budget_bytes = number() << 10,
            "--global-budget-mib" => a.global_budget_bytes = number() << 20,
            "--budget-wait-ms" => a.budget_wait = Duration::from_millis(number()),
            "--listen" => listen = Some(args.next().unwrap_or_else(|| usage())),
            "--host" => host = args.next().unwrap_or_else(|| usage()),
            "--backing-file" => backing = Some(args.next().unwrap_or_else(|| usage())),
            "--workers" => {
                workers = Some(
                    args.next()
                        .and_then(|w| w.parse().ok())
                        .unwrap_or_else(|| usage()),
                );
            }
            _ => usage(),
        }
    }
    let listen = listen.unwrap_or_else(|| usage());
    let extra = match backing {
        Some(path) => {
            let file = FileBackend::open(
                path,
                FileBackendOptions::default().with_logical_block_size(512),
            )?;
            Some(Arc::new(file) as Arc<dyn vvol::BlockBackend>)
        }
        None => None,
    };
    // The host names and order are the quickstart's, which the gateway builds.
    let (_, topology) = vvol::testing::quickstart()?;
    let index = topology.host_index(&host).ok_or_else(|| {
        format!(
            "--host {host:?} is neither an index below {} nor one of {:?}",
            topology.hosts.len(),
            topology.host_names
        )
    })?;
    let config = ServerConfig::default()
        .with_workers_per_connection(workers.unwrap_or(0))
        .with_admission(admission);
    let gateway = Gateway::start(listen.as_str(), index, extra, config)?;
    println!(
        "nbd_gateway: {} ({}) listening on {}",
        gateway.topology.host_names[index],
        gateway.host,
        gateway.server.local_addr()
    );
    for ((vvol, _), name) in gateway.bound.iter().zip(gateway.export_names()) {
        println!("export {name} {vvol}");
    }
    println!("ready");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    loop {
        std::thread::park();
    }
}

//! Runs CDBs against a SCSI target built on the quickstart topology, as one
//! I_T nexus (the host through relative target port 1), and prints what
//! came back so independent decoders can check the bytes.
//!
//! ```text
//! cargo run --example scsi_exec -- [--host <index|name>] <lun>:<cdb>[:<data-out>] ...
//! ```
//!
//! `--host` takes a 0-based index or a host name, as in every example: 0 or
//! `esx-01` (the default), 1 or `esx-02`. Each argument is hex:
//! the 8-byte LUN as 16 digits, the CDB, and optional data-out bytes. For
//! each CDB three lines go to stdout:
//!
//! ```text
//! status: <2 hex digits>
//! data-in: <hex, or nothing>
//! sense: <hex, or nothing>
//! ```
//!
//! The bindings are the quickstart example's (esx-01 runs vm-a and vm-c,
//! esx-02 runs vm-b and browses vm-a's config vVol); their LUNs go to
//! stderr. Example: INQUIRY to the first PE, TEST UNIT READY (which reports
//! the power-on unit attention), then READ CAPACITY(16) of vm-a's config vVol:
//!
//! ```text
//! cargo run --example scsi_exec -- 00fe000000000000:120000006000 \
//!     00fe000100000000:000000000000 \
//!     00fe000100000000:9e100000000000000000000000200000
//! ```

use std::error::Error;
use std::sync::Arc;

use vvol::scsi::{ItNexus, Lun, ScsiTarget};
use vvol::{BindContext, Protocol};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Result<Vec<u8>, String> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not an even number of hex digits"));
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

fn main() -> Result<(), Box<dyn Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut host_arg = "0".to_owned();
    if let Some(at) = args.iter().position(|a| a == "--host") {
        host_arg = args
            .get(at + 1)
            .ok_or("--host needs an index or a host name")?
            .clone();
        args.drain(at..at + 2);
    }
    if args.is_empty() {
        return Err("usage: scsi_exec [--host <index|name>] <lun>:<cdb>[:<data-out>] ...".into());
    }

    let (plane, topo) = vvol::testing::quickstart()?;
    let plane = Arc::new(plane);
    let placements = [(topo.hosts[0], 0), (topo.hosts[1], 1), (topo.hosts[0], 2)];
    for (host, vm) in placements {
        for result in plane.bind(host, &topo.vms[vm].vvols(), BindContext::Normal)? {
            result?;
        }
    }
    plane.bind(topo.hosts[1], &[topo.vms[0].config], BindContext::Normal)?[0]
        .as_ref()
        .map_err(|e| e.to_string())?;

    let index = topo.host_index(&host_arg).ok_or_else(|| {
        format!(
            "--host {host_arg:?} is neither an index below {} nor one of {:?}",
            topo.hosts.len(),
            topo.host_names
        )
    })?;
    let host = topo.hosts[index];
    let target = ScsiTarget::new(Arc::clone(&plane), topo.arrays[0])?;
    for b in plane.bindings_for_host(host)? {
        let vvol = plane.vvol(b.vvol)?;
        if plane.container(vvol.container)?.protocol != Protocol::Scsi {
            continue;
        }
        if let Some(lun) = target.lun_of(b.handle) {
            eprintln!("{lun} {} {} ({})", b.vvol, vvol.vtype, b.handle);
        }
    }

    let nexus = ItNexus::new(host, 1);
    for arg in &args {
        let mut parts = arg.splitn(3, ':');
        let lun: Lun = parts.next().unwrap_or_default().parse()?;
        let cdb = unhex(parts.next().ok_or("each argument needs <lun>:<cdb>")?)?;
        let data_out = match parts.next() {
            Some(d) => unhex(d)?,
            None => Vec::new(),
        };
        let r = target.execute(nexus, lun, &cdb, &data_out);
        println!("status: {:02x}", r.status.code());
        println!("data-in: {}", hex(&r.data_in));
        println!("sense: {}", hex(&r.sense));
    }
    Ok(())
}

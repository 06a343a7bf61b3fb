//! The main job on an embedded default: the vSphere example topology on
//! memory backends, binds, routed I/O, a binding table and per-PE stats.
//!
//! Run with `cargo run --example quickstart`.

use std::error::Error;

use vvol::{BindContext, ControlPlane, Transport, UnbindContext};

fn main() -> Result<(), Box<dyn Error>> {
    let (plane, topo) = vvol::testing::quickstart()?;
    let router = plane.router();

    // esx-01 powers on vm-a and vm-c; esx-02 powers on vm-b.
    let placements = [(topo.hosts[0], 0), (topo.hosts[1], 1), (topo.hosts[0], 2)];
    for (host, vm) in placements {
        let vm = &topo.vms[vm];
        let results = plane.bind(host, &vm.vvols(), BindContext::Normal)?;
        for (vvol, result) in vm.vvols().iter().zip(results) {
            let handle = result?;
            // Tag the first block of every vVol with its id, through the router.
            let (_, block) = router.geometry(host, handle)?;
            let mut payload = vec![0u8; block as usize];
            let tag = vvol.to_string();
            payload[..tag.len()].copy_from_slice(tag.as_bytes());
            router.write(host, handle, 0, &payload, true)?;
            let mut back = vec![0u8; block as usize];
            router.read(host, handle, 0, &mut back)?;
            assert_eq!(back, payload, "routed read returns what was written");
        }
    }

    // esx-02 also opens vm-a's config vVol (a datastore browse): it shares the
    // existing binding because it sees the same PE.
    let browse = plane.bind(topo.hosts[1], &[topo.vms[0].config], BindContext::Normal)?;
    let browse = browse.into_iter().next().ok_or("one result per vVol")??;

    print_bindings(&plane)?;
    print_stats(&plane)?;

    plane.unbind(topo.hosts[1], browse, UnbindContext::Normal)?;
    Ok(())
}

fn print_bindings(plane: &ControlPlane) -> Result<(), Box<dyn Error>> {
    println!("Bindings");
    println!(
        "{:<5} {:<44} {:<4} {:<4} {:<44} {:<7} {:<7} {:<15} VASA vvolSecondaryId",
        "PE", "PE in-band id", "sid", "gen", "vVol", "type", "contnr", "hosts (binds)"
    );
    for array in plane.arrays() {
        for pe in plane.pes_for_array(array)? {
            let info = plane.pe(pe)?;
            let name = match &info.transport {
                Transport::Scsi { naa, admin_lun, .. } => format!("{naa} LUN{admin_lun}"),
                Transport::Nfs {
                    servers, export, ..
                } => format!("nfs://{}{export}", servers[0]),
                other => format!("{other:?}"),
            };
            for b in plane.bindings_for_pe(pe)? {
                let mut hosts = Vec::new();
                for (h, n) in &b.hosts {
                    hosts.push(format!("{}({n})", plane.host(*h)?.name));
                }
                let vvol = plane.vvol(b.vvol)?;
                println!(
                    "{:<5} {:<44} {:<4} {:<4} {:<44} {:<7} {:<7} {:<15} {}",
                    pe.to_string(),
                    name,
                    b.handle.secondary_id.to_string(),
                    b.handle.generation.to_string(),
                    b.vvol.to_string(),
                    vvol.vtype.to_string(),
                    plane.container(vvol.container)?.name,
                    hosts.join(","),
                    plane.vasa_secondary_id(b.handle)?
                );
            }
        }
    }
    println!();
    for container in plane
        .arrays()
        .into_iter()
        .flat_map(|a| plane.array(a).map(|a| a.containers).unwrap_or_default())
    {
        let c = plane.container(container)?;
        let mut pes: Vec<String> = Vec::new();
        for v in plane.vvols_in(container)? {
            for b in plane.bindings_for_vvol(v)? {
                let pe = b.handle.pe.to_string();
                if !pes.contains(&pe) {
                    pes.push(pe);
                }
            }
        }
        pes.sort();
        println!("container {:<7} bound through {}", c.name, pes.join(", "));
    }
    println!();
    Ok(())
}

fn print_stats(plane: &ControlPlane) -> Result<(), Box<dyn Error>> {
    println!("Per-PE stats");
    println!(
        "{:<6} {:>6} {:>7} {:>11} {:>14} {:>7}",
        "PE", "reads", "writes", "bytes read", "bytes written", "errors"
    );
    for s in plane.stats().pes {
        println!(
            "{:<6} {:>6} {:>7} {:>11} {:>14} {:>7}",
            s.pe.to_string(),
            s.io.reads,
            s.io.writes,
            s.io.bytes_read,
            s.io.bytes_written,
            s.io.errors
        );
    }
    Ok(())
}

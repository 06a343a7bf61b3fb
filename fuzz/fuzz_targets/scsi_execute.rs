//! Arbitrary CDBs, LUNs and data-out bytes executed by a SCSI target built on
//! the quickstart topology with bound vVols: never a panic, always a status;
//! through `execute` and through `execute_into` with a buffer of a size the
//! input picks, whose completion never claims more data-in than the buffer.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use vvol::scsi::{ItNexus, Lun, Residual, ScsiTarget};
use vvol::{BindContext, HostId};

fn target() -> &'static (ScsiTarget, HostId) {
    static TARGET: OnceLock<(ScsiTarget, HostId)> = OnceLock::new();
    TARGET.get_or_init(|| {
        let (plane, topo) = vvol::testing::quickstart().expect("quickstart");
        let host = topo.hosts[0];
        for vm in &topo.vms[..2] {
            plane
                .bind(host, &vm.vvols(), BindContext::Normal)
                .expect("bind");
        }
        let array = topo.arrays[0];
        let target = ScsiTarget::new(Arc::new(plane), array).expect("target");
        (target, host)
    })
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 10 {
        return;
    }
    let (target, host) = target();
    let mut raw = [0u8; 8];
    raw.copy_from_slice(&data[..8]);
    let port = u16::from(data[8] % 3);
    let cdb_len = usize::from(data[9] % 33).min(data.len() - 10);
    let (cdb, data_out) = data[10..].split_at(cdb_len);
    let nexus = ItNexus::new(*host, port);
    if data[8] & 0x80 == 0 {
        let response = target.execute(nexus, Lun(raw), cdb, data_out);
        let _ = response;
    } else {
        let mut buf = vec![0u8; usize::from(data[9]) * 64];
        let c = target.execute_into(nexus, Lun(raw), cdb, data_out, &mut buf);
        assert!(c.data_in_len <= buf.len());
        match c.residual {
            Residual::Underflow(n) => assert_eq!(c.data_in_len + n, buf.len()),
            Residual::Overflow(_) | Residual::None => assert_eq!(c.data_in_len, buf.len()),
            _ => {}
        }
    }
});

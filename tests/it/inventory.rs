//! `Router::host_inventory_changes`: what may change what a host sees.

use vvol::{BindContext, Naa, PeSpec, UnbindContext};

#[test]
fn host_inventory_changes_follow_binds_mapping_and_pes() {
    let (plane, topo) = vvol::testing::quickstart().unwrap();
    let router = plane.router();
    let [a, b] = [topo.hosts[0], topo.hosts[1]];
    let count = |h| router.host_inventory_changes(h);
    let (a0, b0) = (count(a), count(b));
    // A bind for one host moves its counter only.
    let h = plane
        .bind(a, &[topo.vms[0].data], BindContext::Normal)
        .unwrap()
        .remove(0)
        .unwrap();
    assert!(count(a) > a0);
    assert_eq!(count(b), b0);
    // So does its unbind.
    let a1 = count(a);
    plane.unbind(a, h, UnbindContext::Normal).unwrap();
    assert!(count(a) > a1);
    assert_eq!(count(b), b0);
    // Unmapping a PE for one host moves that host's counter; what it
    // reports in its PE context changes nothing it sees (VASA semantics).
    let a2 = count(a);
    plane.unmap_pe(a, topo.pes[2]).unwrap();
    assert!(count(a) > a2);
    assert_eq!(count(b), b0);
    let a2 = count(a);
    plane.set_pe_context(a, &topo.pes[..1]).unwrap();
    assert_eq!(count(a), a2);
    // A PE added, failed or removed may change what every host sees.
    let (a3, b3) = (count(a), count(b));
    let naa = Naa::from_parts(0x00_1A_2B, 0x77, 1).unwrap();
    let pe = plane
        .add_pe(topo.arrays[0], PeSpec::scsi(naa, 300))
        .unwrap();
    assert!(count(a) > a3 && count(b) > b3);
    let (a4, b4) = (count(a), count(b));
    plane.fail_pe(pe).unwrap();
    assert!(count(a) > a4 && count(b) > b4);
    let (a5, b5) = (count(a), count(b));
    plane.remove_pe(pe).unwrap();
    assert!(count(a) > a5 && count(b) > b5);
}

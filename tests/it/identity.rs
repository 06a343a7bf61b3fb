//! Identity: unrelated planes never mint the same vVol ids (nor, so, the
//! same per-vVol NAAs), and a durable plane never rewinds its generator.

use std::collections::HashSet;
use std::path::Path;

use vvol::*;

const COMPANY: u32 = 0x00_1a_2b;

fn topology(plane: &ControlPlane) -> ContainerId {
    let array = plane.add_array(ArraySpec::new("array-a", COMPANY)).unwrap();
    plane
        .add_container(array, ContainerSpec::new("gold", Protocol::Scsi, 1 << 40))
        .unwrap()
}

fn create(plane: &ControlPlane, container: ContainerId, n: usize) -> Vec<VvolId> {
    (0..n)
        .map(|_| {
            plane
                .create_vvol(container, VvolSpec::new(VvolType::Data, 1 << 20))
                .unwrap()
        })
        .collect()
}

#[test]
fn unrelated_planes_mint_different_ids_and_naas() {
    let a = ControlPlane::new(Limits::default());
    let b = ControlPlane::new(Limits::default());
    let ids_a = create(&a, topology(&a), 16);
    let ids_b = create(&b, topology(&b), 16);
    let all: HashSet<VvolId> = ids_a.iter().chain(&ids_b).copied().collect();
    assert_eq!(all.len(), 32, "two planes minted a common id");
    #[cfg(feature = "scsi")]
    {
        let naas: HashSet<Naa> = all
            .iter()
            .map(|v| vvol::scsi::derive_vvol_naa(COMPANY, *v))
            .collect();
        assert_eq!(naas.len(), 32, "two vVols share an NAA");
    }
    // Random ids are RFC 4122 version 4.
    for v in &all {
        assert_eq!((v.0 >> 76) & 0xF, 4, "{v} is not a v4 UUID");
    }
}

#[test]
fn seeded_planes_are_reproducible() {
    let a = ControlPlane::new(Limits::default())
        .with_id_seed(9)
        .unwrap();
    let b = ControlPlane::new(Limits::default())
        .with_id_seed(9)
        .unwrap();
    assert_eq!(create(&a, topology(&a), 4), create(&b, topology(&b), 4));
}

fn reopen_and_create(path: &Path, options: impl Fn() -> JournalOptions) {
    let plane = ControlPlane::open_durable(path, Limits::default(), options()).unwrap();
    let c = topology(&plane);
    let mut seen: HashSet<VvolId> = create(&plane, c, 5).into_iter().collect();
    drop(plane);
    for round in 0..3 {
        let plane = ControlPlane::open_durable(path, Limits::default(), options()).unwrap();
        if round == 1 {
            plane.compact_journal().unwrap();
        }
        // The generator continues where it stopped: creating after a
        // reopen succeeds and mints ids never seen before.
        for v in create(&plane, c, 5) {
            assert!(seen.insert(v), "round {round}: {v} minted again");
        }
        drop(plane);
    }
    let plane = ControlPlane::open_durable(path, Limits::default(), options()).unwrap();
    let held: HashSet<VvolId> = plane.vvols_in(c).unwrap().into_iter().collect();
    assert_eq!(held, seen);
}

#[test]
fn a_seeded_durable_plane_never_rewinds() {
    let dir = tempfile::tempdir().unwrap();
    reopen_and_create(&dir.path().join("j"), || {
        JournalOptions::default().with_id_seed(0x5EED)
    });
}

#[test]
fn a_random_durable_plane_never_repeats() {
    let dir = tempfile::tempdir().unwrap();
    reopen_and_create(&dir.path().join("j"), JournalOptions::default);
}

#[test]
fn seeding_a_reopened_seeded_plane_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("j");
    let opts = || JournalOptions::default().with_id_seed(3);
    let plane = ControlPlane::open_durable(&path, Limits::default(), opts()).unwrap();
    let c = topology(&plane);
    let first = create(&plane, c, 3);
    drop(plane);
    let plane = ControlPlane::open_durable(&path, Limits::default(), opts())
        .unwrap()
        .with_id_seed(3)
        .unwrap();
    let again = create(&plane, c, 3);
    assert!(again.iter().all(|v| !first.contains(v)));
}

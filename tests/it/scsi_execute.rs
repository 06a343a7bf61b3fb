//! `ScsiTarget::execute_into`: data-in into the caller's buffer, residuals,
//! inline sense, agreement with `execute`, and commands without I/O that
//! take no place in the PE's queue (review S17).

use crate::support::gate::Gate;
use std::sync::{Arc, Mutex};

use proptest::prelude::*;
use vvol::scsi::{Lun, Residual, ScsiCompletion, Status};
use vvol::{UnbindContext, VvolSpec, VvolType};

use crate::scsi_target::{Fixture, INQUIRY, report_luns};

const MIB: u64 = 1 << 20;

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let [a, b, c, d] = lba.to_be_bytes();
    let [hi, lo] = blocks.to_be_bytes();
    [0x28, 0, a, b, c, d, 0, hi, lo, 0]
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2A;
    c
}

/// A fixture with a ready nexus of host 0 and a 4 MiB SLU holding
/// `pattern(i)` at byte `i` of its first 8 blocks.
fn with_data() -> (Fixture, Lun) {
    let f = Fixture::new();
    let v = f.vvol(4);
    let (_, slu) = f.bind(0, v);
    f.ready(0);
    let data: Vec<u8> = (0..8 * 512).map(pattern).collect();
    let c = into(&f, 0, slu, &write10(0, 8), &data, &mut []);
    assert_eq!(c.status, Status::Good, "{c:?}");
    (f, slu)
}

fn pattern(i: usize) -> u8 {
    (i * 7 + i / 512) as u8
}

fn into(
    f: &Fixture,
    host: usize,
    lun: Lun,
    cdb: &[u8],
    out: &[u8],
    buf: &mut [u8],
) -> ScsiCompletion {
    f.target.execute_into(f.nexus(host), lun, cdb, out, buf)
}

#[test]
fn read_into_an_exact_buffer_fills_it() {
    let (f, slu) = with_data();
    let mut buf = vec![0u8; 1024];
    let c = into(&f, 0, slu, &read10(1, 2), &[], &mut buf);
    assert_eq!(c.status, Status::Good, "{c:?}");
    assert_eq!(c.data_in_len, 1024);
    assert_eq!(c.residual, Residual::None);
    assert!(c.sense.is_empty());
    let expect: Vec<u8> = (512..1536).map(pattern).collect();
    assert_eq!(buf, expect);
}

#[test]
fn a_short_buffer_is_an_overflow_and_gets_what_fits() {
    let (f, slu) = with_data();
    // Not a whole number of blocks.
    let mut buf = vec![0u8; 700];
    let c = into(&f, 0, slu, &read10(0, 2), &[], &mut buf);
    assert_eq!(c.status, Status::Good, "{c:?}");
    assert_eq!(c.data_in_len, 700);
    assert_eq!(c.residual, Residual::Overflow(1024 - 700));
    let expect: Vec<u8> = (0..700).map(pattern).collect();
    assert_eq!(buf, expect);
    // No buffer at all.
    let c = into(&f, 0, slu, &read10(0, 1), &[], &mut []);
    assert_eq!((c.status, c.data_in_len), (Status::Good, 0));
    assert_eq!(c.residual, Residual::Overflow(512));
    // A control command's data-in is cut the same way.
    let mut small = [0u8; 10];
    let c = into(&f, 0, slu, &INQUIRY, &[], &mut small);
    assert_eq!(c.status, Status::Good);
    assert_eq!(c.data_in_len, 10);
    let full = f.run(0, slu, &INQUIRY, &[]).data_in;
    assert_eq!(c.residual, Residual::Overflow(full.len() - 10));
    assert_eq!(&small[..], &full[..10]);
}

#[test]
fn a_larger_buffer_is_an_underflow_and_the_rest_is_untouched() {
    let (f, slu) = with_data();
    let mut buf = vec![0xEEu8; 4096];
    let c = into(&f, 0, slu, &read10(2, 1), &[], &mut buf);
    assert_eq!(c.status, Status::Good, "{c:?}");
    assert_eq!(c.data_in_len, 512);
    assert_eq!(c.residual, Residual::Underflow(4096 - 512));
    let expect: Vec<u8> = (1024..1536).map(pattern).collect();
    assert_eq!(&buf[..512], &expect[..]);
    assert!(buf[512..].iter().all(|&b| b == 0xEE));
    // A WRITE or TEST UNIT READY produces no data-in: all of it is residual.
    let mut spare = [0u8; 16];
    let c = into(&f, 0, slu, &[0; 6], &[], &mut spare);
    assert_eq!((c.status, c.data_in_len), (Status::Good, 0));
    assert_eq!(c.residual, Residual::Underflow(16));
}

#[test]
fn sense_is_inline_in_both_formats_and_matches_execute() {
    let (f, slu) = with_data();
    let mut buf = vec![0xEEu8; 512];
    // Past the capacity (4 MiB = 8192 blocks): LBA OUT OF RANGE, no data.
    let c = into(&f, 0, slu, &read10(8192, 1), &[], &mut buf);
    assert_eq!(c.status, Status::CheckCondition);
    assert_eq!((c.sense[0], c.sense[2], c.sense[12]), (0x70, 0x05, 0x21));
    assert_eq!(c.data_in_len, 0);
    assert_eq!(c.residual, Residual::Underflow(512));
    let r = f.run(0, slu, &read10(8192, 1), &[]);
    assert_eq!(&c.sense[..], &r.sense[..]);
    // D_SENSE through MODE SELECT(10), then a miscompare: descriptor
    // format with an information descriptor (the offset of the first
    // differing byte).
    let sense10 = [0x5A, 0, 0x0A, 0, 0, 0, 0, 0, 0xFF, 0];
    let mut mode = [0u8; 64];
    let c = into(&f, 0, slu, &sense10, &[], &mut mode);
    assert_eq!(c.status, Status::Good);
    let page_at = 8 + usize::from(u16::from_be_bytes([mode[6], mode[7]]));
    let mut list = vec![0u8; 8];
    let mut page = mode[page_at..page_at + 12].to_vec();
    page[2] |= 0x04; // D_SENSE
    list.extend_from_slice(&page);
    let select10 = [0x55, 0x10, 0, 0, 0, 0, 0, 0, list.len() as u8, 0];
    assert_eq!(
        into(&f, 0, slu, &select10, &list, &mut []).status,
        Status::Good
    );
    let mut caw = [0u8; 16];
    caw[0] = 0x89;
    caw[13] = 1;
    let mut out: Vec<u8> = (0..512).map(pattern).collect();
    out[100] ^= 0xFF;
    out.extend_from_slice(&[0; 512]);
    let c = into(&f, 0, slu, &caw, &out, &mut []);
    assert_eq!(c.status, Status::CheckCondition);
    assert_eq!(&c.sense[..4], &[0x72, 0x0E, 0x1D, 0x00]);
    assert_eq!(&c.sense[8..12], &[0x00, 0x0A, 0x80, 0x00]);
    assert_eq!(&c.sense[12..20], &100u64.to_be_bytes());
    assert_eq!(c.sense.len(), 20);
    let r = f.run(0, slu, &caw, &out);
    assert_eq!(&c.sense[..], &r.sense[..]);
}

struct OpenOnDrop<'a>(&'a Gate);

impl Drop for OpenOnDrop<'_> {
    fn drop(&mut self) {
        self.0.open();
    }
}

fn gated(f: &Fixture, gate: &Arc<Gate>) -> vvol::VvolId {
    crate::support::create_on(
        &f.plane,
        f.container,
        VvolSpec::new(VvolType::Data, 4 * MIB),
        Arc::clone(gate) as _,
        "test",
    )
}

#[test]
fn commands_without_io_to_an_slu_answer_while_the_pe_queue_is_full() {
    const DEPTH: u32 = 32;
    let f = Fixture::with_queue_depth(DEPTH);
    let gate = Gate::new();
    let v = gated(&f, &gate);
    let (_, slu) = f.bind(0, v);
    let (_, slu2) = f.bind(1, v);
    assert_eq!(slu, slu2, "both hosts share the binding");
    f.ready(0);
    f.ready(1);
    std::thread::scope(|s| {
        // Opens the gate even when an assertion below fails, so the
        // readers finish and the failure is reported instead of hanging.
        let _open = OpenOnDrop(&gate);
        let readers: Vec<_> = (0..DEPTH)
            .map(|_| s.spawn(|| f.run(0, slu, &read10(0, 1), &[])))
            .collect();
        gate.wait_for(DEPTH);
        assert_eq!(
            f.plane.router().pe_stats(f.pe).unwrap().in_flight,
            DEPTH,
            "one queue place per READ"
        );
        // The queue is full: I/O is refused (host 1's nexus has no command
        // in the task set: BUSY) ...
        assert_eq!(f.run(1, slu, &read10(0, 1), &[]).status, Status::Busy);
        let mut buf = [0u8; 512];
        let c = into(&f, 1, slu, &read10(0, 1), &[], &mut buf);
        assert_eq!(c.status, Status::Busy);
        assert!(c.sense.is_empty());
        // ... but INQUIRY, REQUEST SENSE and REPORT LUNS to the SLU are not
        // I/O and still answer (SPC-5 6.7, 6.39, 6.33; review S17).
        let inquiry = f.run(1, slu, &INQUIRY, &[]);
        assert_eq!(inquiry.status, Status::Good, "{inquiry:?}");
        assert_eq!(inquiry.data_in[0] & 0x1F, 0x00, "a direct-access SLU");
        let request_sense = [0x03, 0, 0, 0, 18, 0];
        let r = f.run(1, slu, &request_sense, &[]);
        assert_eq!(r.status, Status::Good, "{r:?}");
        assert_eq!((r.data_in[0], r.data_in[2]), (0x70, 0x00), "NO SENSE");
        let mut buf = [0u8; 18];
        let c = into(&f, 1, slu, &request_sense, &[], &mut buf);
        assert_eq!((c.status, c.data_in_len), (Status::Good, 18));
        let mut luns = [0u8; 64];
        let c = into(&f, 1, slu, &report_luns(0), &[], &mut luns);
        assert_eq!(c.status, Status::Good, "{c:?}");
        let listed = u32::from_be_bytes(luns[..4].try_into().unwrap()) as usize;
        assert!(
            luns[8..8 + listed.min(56)]
                .chunks(8)
                .any(|l| l == slu.to_bytes()),
            "the SLU is listed: {luns:?}"
        );
        // Nor are the VPD pages and READ CAPACITY (16) that read backend
        // properties (LBPRZ, OPTIMAL UNMAP GRANULARITY).
        for cdb in [
            &crate::scsi_target::vpd(0xB0)[..],
            &crate::scsi_target::vpd(0xB2)[..],
            &[0x9E, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 32, 0, 0][..],
        ] {
            let r = f.run(1, slu, cdb, &[]);
            assert_eq!(r.status, Status::Good, "{cdb:02x?}: {r:?}");
        }
        gate.open();
        for r in readers {
            assert_eq!(r.join().unwrap().status, Status::Good);
        }
    });
    assert_eq!(f.plane.router().pe_stats(f.pe).unwrap().in_flight, 0);
}

#[test]
fn a_read_admitted_before_an_unbind_completes_and_later_ones_fail() {
    let f = Fixture::new();
    let gate = Gate::new();
    let v = gated(&f, &gate);
    let (handle, slu) = f.bind(0, v);
    f.ready(0);
    std::thread::scope(|s| {
        let _open = OpenOnDrop(&gate);
        let reader = s.spawn(|| {
            let mut buf = [0xEEu8; 512];
            let c = into(&f, 0, slu, &read10(0, 1), &[], &mut buf);
            (c, buf)
        });
        gate.wait_for(1);
        f.plane
            .unbind(f.hosts[0], handle, UnbindContext::Normal)
            .unwrap();
        gate.open();
        let (c, buf) = reader.join().unwrap();
        assert_eq!((c.status, c.data_in_len), (Status::Good, 512), "{c:?}");
        assert!(buf.iter().all(|&b| b == 0), "the vVol's (unwritten) block");
    });
    // After the unbind the LUN names nothing: a later READ fails (after the
    // REPORTED LUNS DATA HAS CHANGED unit attention, which may come first).
    let mut buf = [0u8; 512];
    let mut c = into(&f, 0, slu, &read10(0, 1), &[], &mut buf);
    if c.sense.get(12) == Some(&0x3F) {
        c = into(&f, 0, slu, &read10(0, 1), &[], &mut buf);
    }
    assert_eq!(c.status, Status::CheckCondition, "{c:?}");
    assert_eq!((c.sense[2], c.sense[12]), (0x05, 0x25), "LUN NOT SUPPORTED");
    assert_eq!(c.data_in_len, 0);
}

/// CDBs: random bytes, or an opcode the target knows with random fields.
/// COMPARE AND WRITE is left out: its outcome depends on what the other
/// nexus wrote just before.
fn cdb() -> impl Strategy<Value = Vec<u8>> {
    const OPCODES: [u8; 22] = [
        0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x1A, 0x25, 0x28, 0x2A, 0x35, 0x42, 0x55, 0x5A, 0x88,
        0x8A, 0x91, 0x93, 0x9E, 0xA0, 0xA3, 0xEE,
    ];
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..20),
        (
            proptest::sample::select(&OPCODES[..]),
            proptest::collection::vec(any::<u8>(), 15),
            // Small transfer lengths and LBAs, so reads and writes succeed.
            any::<bool>(),
        )
            .prop_map(|(op, mut rest, small)| {
                if small {
                    for b in &mut rest[..8] {
                        *b &= 0x01;
                    }
                }
                rest.insert(0, op);
                rest.truncate(match op {
                    0x00..=0x1F => 6,
                    0x20..=0x5F => 10,
                    0xA0..=0xBF => 12,
                    _ => 16,
                });
                rest
            }),
    ]
    .prop_filter("COMPARE AND WRITE", |c| c.first() != Some(&0x89))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    /// Host 0 runs each command with `execute`, host 1 (same binding, same
    /// LUN, its own nexus state) with `execute_into`: the same status and
    /// sense, and the data-in cut to the buffer with the residual saying
    /// by how much.
    #[test]
    fn execute_into_agrees_with_execute(
        lun in prop_oneof![
            3 => Just(None),
            1 => Just(Some(Lun([0, 255, 0, 0, 0, 0, 0, 0]))),
            1 => any::<[u8; 8]>().prop_map(|b| Some(Lun(b))),
        ],
        cdb in cdb(),
        out in proptest::collection::vec(any::<u8>(), 0..1100),
        buf_len in prop_oneof![Just(0usize), 0usize..2048, Just(4096)],
    ) {
        use std::sync::OnceLock;
        static FIX: OnceLock<Mutex<(Fixture, Lun)>> = OnceLock::new();
        let fix = FIX.get_or_init(|| {
            let f = Fixture::new();
            let v = f.vvol(1);
            let (_, slu) = f.bind(0, v);
            let (_, slu2) = f.bind(1, v);
            assert_eq!(slu, slu2);
            Mutex::new((f, slu))
        });
        let fix = fix.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (f, slu) = &*fix;
        let lun = lun.unwrap_or(*slu);
        let r = f.run(0, lun, &cdb, &out);
        let mut buf = vec![0u8; buf_len];
        let c = into(f, 1, lun, &cdb, &out, &mut buf);
        prop_assert_eq!(c.status, r.status);
        prop_assert_eq!(&c.sense[..], &r.sense[..]);
        let n = r.data_in.len().min(buf_len);
        prop_assert_eq!(c.data_in_len, n);
        prop_assert_eq!(&buf[..n], &r.data_in[..n]);
        prop_assert_eq!(c.residual, Residual::of(r.data_in.len(), buf_len));
    }
}

/// One step of a host's life with the target.
#[derive(Clone, Debug)]
enum Step {
    /// A command to the SLU (`None`), the ALU (`Some(true)`) or LUN 0.
    Command(Option<bool>, Vec<u8>, Vec<u8>),
    /// A target reset: 29h/00h on every LU.
    Reset,
    /// Another vVol bound for the host: 3Fh/0Eh on the ALU.
    Bind,
    /// The SLU grows: 2Ah/09h on it.
    Grow,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (
            prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
            cdb(),
            proptest::collection::vec(any::<u8>(), 0..1100),
        )
            .prop_map(|(lu, cdb, out)| Step::Command(lu, cdb, out)),
        1 => Just(Step::Reset),
        1 => Just(Step::Bind),
        1 => Just(Step::Grow),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    /// Two identical arrays, the same steps: one host's commands through a
    /// `ScsiSession` (its LU cache kept across LUs and changes), the
    /// other's through `execute_into`. Every completion agrees, unit
    /// attentions included.
    #[test]
    fn a_session_agrees_with_execute_into(steps in proptest::collection::vec(step(), 1..24)) {
        let twins = [Fixture::new(), Fixture::new()];
        let mut slus = Vec::new();
        let mut vvols = Vec::new();
        for f in &twins {
            let v = f.vvol(1);
            let (_, slu) = f.bind(0, v);
            slus.push(slu);
            vvols.push(v);
        }
        prop_assert_eq!(slus[0], slus[1]);
        let mut session = twins[0].target.session(twins[0].nexus(0));
        let mut grown = 1;
        for step in steps {
            match step {
                Step::Command(lu, cdb, out) => {
                    let lun = match lu {
                        None => slus[0],
                        Some(true) => twins[0].alu(),
                        Some(false) => Lun::default(),
                    };
                    let (mut a, mut b) = (vec![0u8; 4096], vec![0u8; 4096]);
                    let via_session = session.execute_into(lun, &cdb, &out, &mut a);
                    let direct = into(&twins[1], 0, lun, &cdb, &out, &mut b);
                    prop_assert_eq!(via_session.status, direct.status, "{:02x?}", cdb);
                    prop_assert_eq!(&via_session.sense[..], &direct.sense[..]);
                    prop_assert_eq!(via_session.data_in_len, direct.data_in_len);
                    prop_assert_eq!(via_session.residual, direct.residual);
                    prop_assert_eq!(&a[..], &b[..]);
                }
                Step::Reset => twins.iter().for_each(|f| f.target.reset()),
                Step::Bind => {
                    for f in &twins {
                        let v = f.vvol(1);
                        f.bind(0, v);
                    }
                }
                Step::Grow => {
                    grown += 1;
                    for (f, v) in twins.iter().zip(&vvols) {
                        f.plane.resize_vvol(*v, grown << 20).unwrap();
                    }
                }
            }
        }
    }
}

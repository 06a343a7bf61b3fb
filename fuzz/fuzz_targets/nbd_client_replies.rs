//! An NBD server that answers with arbitrary bytes: the client must fail
//! with a typed error (or succeed), within its timeouts, without panicking
//! or allocating past its limits.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vvol::BlockBackend;
use vvol::nbd::{NbdBackend, NbdConfig};

fuzz_target!(|data: &[u8]| {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    let reply = data.to_vec();
    let server = std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
            let _ = stream.write_all(&reply);
            // End of the reply: the client sees EOF instead of waiting for
            // its I/O timeout.
            let _ = stream.shutdown(Shutdown::Write);
            let mut buf = [0u8; 4096];
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
            }
        }
    });
    let config = NbdConfig::tcp(address, "fuzz")
        .with_connect_timeout(Duration::from_millis(500))
        .with_io_timeout(Duration::from_millis(100))
        .with_reconnect_attempts(0, Duration::ZERO);
    if let Ok(backend) = NbdBackend::connect(config) {
        let mut buf = vec![0u8; 4096];
        let _ = backend.read_at(0, &mut buf);
        let _ = backend.write_at(0, &buf, true);
        let _ = backend.flush();
        let _ = backend.allocation(0, 4096);
        drop(backend);
    }
    let _ = server.join();
});

//! Arbitrary bytes from a client to the NBD gateway (handshake, options and
//! transmission requests) over loopback: the server must answer or close
//! that connection, never panic or hang, and keep serving the next one.
#![no_main]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::OnceLock;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use vvol::nbd::{Gateway, ServerConfig};

fn gateway() -> &'static Gateway {
    static GATEWAY: OnceLock<Gateway> = OnceLock::new();
    GATEWAY.get_or_init(|| {
        let config = ServerConfig::default().with_handshake_deadline(Duration::from_secs(2));
        Gateway::start("127.0.0.1:0", 0, None, config).expect("gateway starts")
    })
}

fuzz_target!(|data: &[u8]| {
    let address = gateway().server.local_addr();
    let mut stream = TcpStream::connect(address).expect("the gateway still accepts");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // The server may close early; a failed write is an accepted outcome.
    let _ = stream.write_all(data);
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                sink.extend_from_slice(&buf[..n]);
                assert!(sink.len() < 256 << 20, "reply volume bounded");
            }
        }
    }
});

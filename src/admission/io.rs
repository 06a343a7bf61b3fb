//! [`DeadlineIo`]: a socket whose every read and write must finish before
//! one deadline (the handshake deadline).

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Instant;

/// Reads and writes `stream`, failing with [`io::ErrorKind::TimedOut`] once
/// `deadline` has passed: each call sets the socket timeout to the time
/// left, so a peer that trickles bytes cannot stretch the handshake.
#[derive(Debug)]
pub struct DeadlineIo<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl<'a> DeadlineIo<'a> {
    /// I/O on `stream` until `deadline`.
    #[must_use]
    pub fn new(stream: &'a TcpStream, deadline: Instant) -> Self {
        Self { stream, deadline }
    }

    fn left(&self) -> io::Result<std::time::Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(|| io::Error::new(io::ErrorKind::TimedOut, "handshake deadline passed"))
    }
}

impl Read for DeadlineIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        (&mut &*self.stream).read(buf)
    }
}

impl Write for DeadlineIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        (&mut &*self.stream).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

//! A seekable writer that discards bytes (a file stand-in that never grows a buffer), for the
//! allocation test and the WebM benchmark.

use std::io::{Seek, SeekFrom, Write};

pub struct Sink(pub u64);

impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0 += b.len() as u64;
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for Sink {
    fn seek(&mut self, p: SeekFrom) -> std::io::Result<u64> {
        if let SeekFrom::Start(x) = p {
            self.0 = x;
        }
        Ok(self.0)
    }
}

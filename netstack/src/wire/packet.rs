//! A packet under construction or in flight: bytes with room reserved in front and behind, so
//! each layer adds its header in place (Ethernet after IP, later ESP and tunnel headers before
//! the inner packet) instead of copying the whole packet into a new buffer per layer.
//!
//! Emitters build from the inside out: the payload is appended first, then every layer below
//! `prepend`s its header.

/// Enough in front for Ethernet (14) + an outer IPv6 header (40) + ESP header and IV (8 + 16)
/// + an inner IPv6 header with a fragment header (48), rounded up.
pub const DEFAULT_HEADROOM: usize = 160;
/// Behind: ESP padding, trailer and ICV (up to 16 + 2 + 32).
pub const DEFAULT_TAILROOM: usize = 64;

#[derive(Clone, PartialEq, Eq)]
pub struct PacketBuf {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl std::fmt::Debug for PacketBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PacketBuf({:02x?})", self.data())
    }
}

impl Default for PacketBuf {
    fn default() -> Self {
        PacketBuf::with_room(DEFAULT_HEADROOM, 0, DEFAULT_TAILROOM)
    }
}

impl PacketBuf {
    /// An empty packet with the default head- and tailroom.
    pub fn new() -> PacketBuf {
        PacketBuf::default()
    }

    /// An empty packet with `headroom` bytes in front and space for `len + tailroom` behind.
    pub fn with_room(headroom: usize, len: usize, tailroom: usize) -> PacketBuf {
        PacketBuf {
            buf: vec![0; headroom + len + tailroom],
            start: headroom,
            end: headroom,
        }
    }

    /// A packet holding a copy of `data`, with the default room around it.
    pub fn from_slice(data: &[u8]) -> PacketBuf {
        let mut p = PacketBuf::with_room(DEFAULT_HEADROOM, data.len(), DEFAULT_TAILROOM);
        p.extend_from_slice(data);
        p
    }

    pub fn data(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.start..self.end]
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn headroom(&self) -> usize {
        self.start
    }

    /// Opens `n` bytes in front of the data and returns them (zeroed only if the buffer had to
    /// grow; callers write every byte). Grows, moving the data once, when headroom runs out.
    pub fn prepend(&mut self, n: usize) -> &mut [u8] {
        if n > self.start {
            let grow = (n - self.start).max(DEFAULT_HEADROOM);
            self.buf.splice(0..0, std::iter::repeat_n(0, grow));
            self.start += grow;
            self.end += grow;
        }
        self.start -= n;
        &mut self.buf[self.start..self.start + n]
    }

    /// Opens `n` bytes after the data and returns them.
    pub fn append(&mut self, n: usize) -> &mut [u8] {
        if self.end + n > self.buf.len() {
            self.buf.resize(self.end + n, 0);
        }
        let at = self.end;
        self.end += n;
        &mut self.buf[at..at + n]
    }

    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.append(data.len()).copy_from_slice(data);
    }

    /// Drops `n` bytes from the front (a header that was consumed).
    pub fn trim_front(&mut self, n: usize) {
        self.start += n.min(self.len());
    }

    /// Keeps only the first `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        self.end = self.start + len.min(self.len());
    }

    /// The data as a vector of its own (tests and queues that outlive the buffer).
    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_go_in_front_without_moving_the_payload() {
        let mut p = PacketBuf::new();
        p.extend_from_slice(b"payload");
        let before = p.data().as_ptr();
        p.prepend(4).copy_from_slice(b"hdr:");
        assert_eq!(p.data(), b"hdr:payload");
        assert_eq!(bytes_between(before, p.data().as_ptr()), 4);
        p.trim_front(4);
        assert_eq!(p.data(), b"payload");
        p.truncate(3);
        assert_eq!(p.data(), b"pay");
    }

    fn bytes_between(a: *const u8, b: *const u8) -> usize {
        a as usize - b as usize
    }

    #[test]
    fn running_out_of_headroom_grows_the_buffer() {
        let mut p = PacketBuf::with_room(2, 0, 0);
        p.extend_from_slice(b"xy");
        p.prepend(5).copy_from_slice(b"12345");
        assert_eq!(p.data(), b"12345xy");
        assert!(p.headroom() >= DEFAULT_HEADROOM - 3);
    }
}

//! The few EBML primitives the WebM writer and `repair` need: element ids, variable
//! size integers, and a bounds-checked reader. Internal to the crate.

/// Element ids used by the writer and `repair` (Matroska / WebM).
pub(crate) mod id {
    pub const EBML: u32 = 0x1A45_DFA3;
    pub const EBML_VERSION: u32 = 0x4286;
    pub const EBML_READ_VERSION: u32 = 0x42F7;
    pub const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
    pub const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
    pub const DOC_TYPE: u32 = 0x4282;
    pub const DOC_TYPE_VERSION: u32 = 0x4287;
    pub const DOC_TYPE_READ_VERSION: u32 = 0x4285;
    pub const SEGMENT: u32 = 0x1853_8067;
    pub const SEEK_HEAD: u32 = 0x114D_9B74;
    pub const SEEK: u32 = 0x4DBB;
    pub const SEEK_ID: u32 = 0x53AB;
    pub const SEEK_POSITION: u32 = 0x53AC;
    pub const VOID: u32 = 0xEC;
    pub const INFO: u32 = 0x1549_A966;
    pub const TIMECODE_SCALE: u32 = 0x2A_D7B1;
    pub const MUXING_APP: u32 = 0x4D80;
    pub const WRITING_APP: u32 = 0x5741;
    pub const DURATION: u32 = 0x4489;
    pub const TRACKS: u32 = 0x1654_AE6B;
    pub const TRACK_ENTRY: u32 = 0xAE;
    pub const TRACK_NUMBER: u32 = 0xD7;
    pub const TRACK_UID: u32 = 0x73C5;
    pub const TRACK_TYPE: u32 = 0x83;
    pub const FLAG_LACING: u32 = 0x9C;
    pub const CODEC_ID: u32 = 0x86;
    pub const CODEC_PRIVATE: u32 = 0x63A2;
    pub const CODEC_DELAY: u32 = 0x56AA;
    pub const SEEK_PRE_ROLL: u32 = 0x56BB;
    pub const AUDIO: u32 = 0xE1;
    pub const SAMPLING_FREQUENCY: u32 = 0xB5;
    pub const CHANNELS: u32 = 0x9F;
    pub const CLUSTER: u32 = 0x1F43_B675;
    pub const TIMECODE: u32 = 0xE7;
    pub const SIMPLE_BLOCK: u32 = 0xA3;
    pub const BLOCK_GROUP: u32 = 0xA0;
    pub const BLOCK: u32 = 0xA1;
    pub const CUES: u32 = 0x1C53_BB6B;
    pub const CUE_POINT: u32 = 0xBB;
    pub const CUE_TIME: u32 = 0xB3;
    pub const CUE_TRACK_POSITIONS: u32 = 0xB7;
    pub const CUE_TRACK: u32 = 0xF7;
    pub const CUE_CLUSTER_POSITION: u32 = 0xF1;
}

/// Size field meaning "unknown" (8-byte form), used for the live Segment.
pub(crate) const UNKNOWN_SIZE_8: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];

pub(crate) fn put_id(buf: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = match id {
        0..=0xFF => 3,
        0x100..=0xFFFF => 2,
        0x1_0000..=0xFF_FFFF => 1,
        _ => 0,
    };
    buf.extend_from_slice(&bytes[skip..]);
}

/// Minimal-length EBML size.
pub(crate) fn put_size(buf: &mut Vec<u8>, size: u64) {
    let mut len = 1;
    while len < 8 && size >= (1u64 << (7 * len)) - 1 {
        len += 1;
    }
    put_size_len(buf, size, len);
}

/// EBML size on exactly `len` bytes (1–8); `size` must fit.
pub(crate) fn put_size_len(buf: &mut Vec<u8>, size: u64, len: usize) {
    let v = size | (1u64 << (7 * len));
    buf.extend_from_slice(&v.to_be_bytes()[8 - len..]);
}

pub(crate) fn put_uint(buf: &mut Vec<u8>, id: u32, v: u64) {
    let n = (8 - (v.leading_zeros() / 8) as usize).max(1);
    put_id(buf, id);
    put_size(buf, n as u64);
    buf.extend_from_slice(&v.to_be_bytes()[8 - n..]);
}

/// Unsigned integer on a fixed 8 bytes, so it can be rewritten in place.
pub(crate) fn put_uint8(buf: &mut Vec<u8>, id: u32, v: u64) {
    put_id(buf, id);
    put_size(buf, 8);
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_float(buf: &mut Vec<u8>, id: u32, v: f64) {
    put_id(buf, id);
    put_size(buf, 8);
    buf.extend_from_slice(&v.to_be_bytes());
}

pub(crate) fn put_bytes(buf: &mut Vec<u8>, id: u32, v: &[u8]) {
    put_id(buf, id);
    put_size(buf, v.len() as u64);
    buf.extend_from_slice(v);
}

pub(crate) fn put_master(buf: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_bytes(buf, id, body);
}

/// A Void element occupying exactly `total` bytes (`total` ≥ 2).
pub(crate) fn put_void(buf: &mut Vec<u8>, total: usize) {
    debug_assert!(total >= 2);
    // 1 id byte + 1 size byte covers up to 126 payload bytes; enough for our use.
    let payload = total.saturating_sub(2);
    put_id(buf, id::VOID);
    put_size_len(buf, payload as u64, 1);
    buf.resize(buf.len() + payload, 0);
}

/// A bounds-checked cursor over EBML bytes. Every read returns `None` when the data
/// ends; nothing panics on arbitrary input.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub data: &'a [u8],
    pub pos: usize,
}

/// One element header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Header {
    pub id: u32,
    /// `None` for the unknown size.
    pub size: Option<u64>,
    /// Offset of the element's data.
    pub data_start: usize,
}

impl Header {
    /// Offset just past the element's data; `None` for the unknown size or an overflowing one.
    pub fn end(&self) -> Option<usize> {
        self.size
            .and_then(|s| usize::try_from(s).ok())
            .and_then(|s| self.data_start.checked_add(s))
    }
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8], pos: usize) -> Self {
        Reader { data, pos }
    }

    fn vint(&mut self, keep_marker: bool) -> Option<(u64, usize)> {
        let first = *self.data.get(self.pos)?;
        if first == 0 {
            return None;
        }
        let len = first.leading_zeros() as usize + 1;
        let bytes = self.data.get(self.pos..self.pos.checked_add(len)?)?;
        let mut v = if keep_marker {
            u64::from(first)
        } else {
            u64::from(first) & ((1u64 << (8 - len)) - 1)
        };
        for b in &bytes[1..] {
            v = (v << 8) | u64::from(*b);
        }
        self.pos += len;
        Some((v, len))
    }

    pub fn header(&mut self) -> Option<Header> {
        let (id, id_len) = self.vint(true)?;
        if id_len > 4 {
            return None;
        }
        let (size, len) = self.vint(false)?;
        let unknown = size == (1u64 << (7 * len)) - 1;
        Some(Header {
            id: id as u32,
            size: (!unknown).then_some(size),
            data_start: self.pos,
        })
    }
}

/// Big-endian unsigned integer of up to 8 bytes.
pub(crate) fn read_uint(b: &[u8]) -> Option<u64> {
    if b.len() > 8 {
        return None;
    }
    Some(b.iter().fold(0u64, |v, x| (v << 8) | u64::from(*x)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_roundtrip() {
        for v in [0u64, 1, 126, 127, 128, 16382, 16383, 1 << 40] {
            let mut b = Vec::new();
            put_id(&mut b, id::VOID);
            put_size(&mut b, v);
            let h = Reader::new(&b, 0).header().unwrap();
            assert_eq!((h.id, h.size), (id::VOID, Some(v)));
        }
        let mut b = Vec::new();
        put_id(&mut b, id::SEGMENT);
        b.extend_from_slice(&UNKNOWN_SIZE_8);
        let h = Reader::new(&b, 0).header().unwrap();
        assert_eq!((h.id, h.size, h.data_start), (id::SEGMENT, None, 12));
        let mut b = Vec::new();
        put_void(&mut b, 11);
        assert_eq!(b.len(), 11);
    }
}

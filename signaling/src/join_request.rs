//! The LiveKit v1 signal URL's `join_request` parameter (`GET /rtc/v1?join_request=…`): URL-safe
//! base64 of a `WrappedJoinRequest` whose `join_request` bytes are a `JoinRequest`, either plain or
//! gzip-compressed. Decoding is bounded at every step (encoded length, decompressed size) so a
//! client cannot make the server allocate more than [`Limits`] allow; malformed input is an error,
//! never a panic.

use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use livekit_protocol as proto;
use prost::Message;
use std::io::Read;

/// Bounds on what one `join_request` may cost.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest accepted parameter (base64 text).
    pub max_encoded: usize,
    /// Largest `JoinRequest` after decompression.
    pub max_decoded: usize,
}

impl Default for Limits {
    fn default() -> Self {
        // A browser's first JoinRequest carries its publisher offer: a few KB, tens with many
        // codecs and simulcast layers. 256 KB of URL and 1 MB of protobuf leave ample room.
        Limits {
            max_encoded: 256 * 1024,
            max_decoded: 1024 * 1024,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JoinRequestError {
    #[error("join_request is longer than {0} bytes")]
    TooLong(usize),
    #[error("join_request is not URL-safe base64")]
    Base64,
    #[error("join_request is not a WrappedJoinRequest: {0}")]
    Wrapper(String),
    #[error("join_request compression {0} is not supported (NONE or GZIP)")]
    Compression(i32),
    #[error("join_request gzip data is invalid")]
    Gzip,
    #[error("join_request decompresses to more than {0} bytes")]
    TooLarge(usize),
    #[error("join_request does not hold a JoinRequest: {0}")]
    Request(String),
}

/// Decode a `join_request` query parameter value (already percent-decoded).
pub fn decode(param: &str, limits: Limits) -> Result<proto::JoinRequest, JoinRequestError> {
    if param.len() > limits.max_encoded {
        return Err(JoinRequestError::TooLong(limits.max_encoded));
    }
    // The SDKs send padded URL-safe base64; accept it unpadded too (and the standard alphabet's
    // padding-free form via URL_SAFE_NO_PAD after trimming '=').
    let trimmed = param.trim();
    let bytes = URL_SAFE
        .decode(trimmed)
        .or_else(|_| URL_SAFE_NO_PAD.decode(trimmed.trim_end_matches('=')))
        .map_err(|_| JoinRequestError::Base64)?;
    let wrapped = proto::WrappedJoinRequest::decode(bytes.as_slice())
        .map_err(|e| JoinRequestError::Wrapper(e.to_string()))?;
    let plain = match proto::wrapped_join_request::Compression::try_from(wrapped.compression) {
        Ok(proto::wrapped_join_request::Compression::None) => {
            if wrapped.join_request.len() > limits.max_decoded {
                return Err(JoinRequestError::TooLarge(limits.max_decoded));
            }
            wrapped.join_request
        }
        Ok(proto::wrapped_join_request::Compression::Gzip) => {
            gunzip(&wrapped.join_request, limits.max_decoded)?
        }
        Err(_) => return Err(JoinRequestError::Compression(wrapped.compression)),
    };
    proto::JoinRequest::decode(plain.as_slice())
        .map_err(|e| JoinRequestError::Request(e.to_string()))
}

/// Gunzip at most `max` bytes: one byte more is an error (a zip bomb stops there).
fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, JoinRequestError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max));
    let read = flate2::read::GzDecoder::new(data)
        .take(max as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| JoinRequestError::Gzip)?;
    if read > max {
        return Err(JoinRequestError::TooLarge(max));
    }
    Ok(out)
}

/// Encode a `JoinRequest` as the SDKs do (for tests and the load generator).
pub fn encode(req: &proto::JoinRequest, gzip: bool) -> String {
    let raw = req.encode_to_vec();
    let (compression, join_request) = if gzip {
        use std::io::Write;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        // Writing into a Vec cannot fail.
        let _ = enc.write_all(&raw);
        (
            proto::wrapped_join_request::Compression::Gzip,
            enc.finish().unwrap_or_default(),
        )
    } else {
        (proto::wrapped_join_request::Compression::None, raw)
    };
    let wrapped = proto::WrappedJoinRequest {
        compression: compression as i32,
        join_request,
    };
    URL_SAFE.encode(wrapped.encode_to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> proto::JoinRequest {
        proto::JoinRequest {
            metadata: "m".into(),
            publisher_offer: Some(proto::SessionDescription {
                r#type: "offer".into(),
                sdp: "v=0\r\n".repeat(200),
                ..Default::default()
            }),
            connection_settings: Some(proto::ConnectionSettings {
                auto_subscribe: true,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn plain_and_gzip_round_trip() {
        for gzip in [false, true] {
            let s = encode(&sample(), gzip);
            assert_eq!(
                decode(&s, Limits::default()).unwrap(),
                sample(),
                "gzip {gzip}"
            );
            // Unpadded is accepted too.
            assert_eq!(
                decode(s.trim_end_matches('='), Limits::default()).unwrap(),
                sample()
            );
        }
    }

    #[test]
    fn malformed_and_oversized_input_is_refused() {
        let l = Limits::default();
        assert_eq!(decode("!!!", l), Err(JoinRequestError::Base64));
        assert!(matches!(
            decode(&URL_SAFE.encode([0xff, 0xff, 0xff]), l),
            Err(JoinRequestError::Wrapper(_))
        ));
        let bad_comp = proto::WrappedJoinRequest {
            compression: 7,
            join_request: vec![],
        };
        assert_eq!(
            decode(&URL_SAFE.encode(bad_comp.encode_to_vec()), l),
            Err(JoinRequestError::Compression(7))
        );
        let not_gzip = proto::WrappedJoinRequest {
            compression: 1,
            join_request: vec![1, 2, 3],
        };
        assert_eq!(
            decode(&URL_SAFE.encode(not_gzip.encode_to_vec()), l),
            Err(JoinRequestError::Gzip)
        );
        let long = "A".repeat(l.max_encoded + 1);
        assert_eq!(
            decode(&long, l),
            Err(JoinRequestError::TooLong(l.max_encoded))
        );
        // A gzip bomb: 64 MB of zeros compress to ~64 KB; decoding stops at the limit.
        let bomb = {
            use std::io::Write;
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
            enc.write_all(&vec![0u8; 64 << 20]).unwrap();
            enc.finish().unwrap()
        };
        let w = proto::WrappedJoinRequest {
            compression: 1,
            join_request: bomb,
        };
        let small = Limits {
            max_encoded: 1 << 20,
            max_decoded: 1 << 20,
        };
        assert_eq!(
            decode(&URL_SAFE.encode(w.encode_to_vec()), small),
            Err(JoinRequestError::TooLarge(1 << 20))
        );
    }
}

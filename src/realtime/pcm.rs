//! Audio on the session WebSocket: PCM16LE mono 24 kHz samples as base64 text.

use base64::Engine;

/// base64 PCM16LE → samples.
pub fn decode(b64: &str) -> Result<Vec<i16>, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("`audio` is not base64: {e}"))?;
    if bytes.len() % 2 != 0 {
        return Err("`audio` must hold whole 16-bit samples".into());
    }
    Ok(bytes
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect())
}

/// Samples → base64 PCM16LE.
pub fn encode(pcm: &[i16]) -> String {
    let bytes: Vec<u8> = pcm.iter().flat_map(|s| s.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcm_round_trip_and_refusals() {
        let pcm = vec![0i16, 1, -1, i16::MAX, i16::MIN];
        assert_eq!(decode(&encode(&pcm)).unwrap(), pcm);
        assert!(decode("!!!").is_err());
        assert!(decode("AA==").is_err(), "odd byte count");
    }
}

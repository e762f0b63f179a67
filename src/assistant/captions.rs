//! Captions into the room as LiveKit transcriptions: one `lk.transcription` text stream per
//! segment (a `DataPacket` stream header, chunks of text as they come, a trailer), which
//! `livekit-client` hands to `room.registerTextStreamHandler('lk.transcription', …)`. Attributes
//! as LiveKit Agents send them: `lk.segment_id`, `lk.transcribed_track_id`, `lk.transcription_final`
//! (and `lk.transcribed_participant_identity`, naming whose speech it is). Pure: packet builders.

use parlor_signaling::protocol::proto;
use proto::data_packet::Value;
use proto::data_stream;
use std::collections::HashMap;

pub const TOPIC: &str = "lk.transcription";

fn packet(value: Value) -> proto::DataPacket {
    #[allow(deprecated)]
    proto::DataPacket {
        kind: proto::data_packet::Kind::Reliable as i32,
        value: Some(value),
        ..Default::default()
    }
}

/// The header opening caption stream `stream_id` for the speech of `identity` on `track_sid`.
pub fn header(stream_id: &str, track_sid: &str, identity: &str, now_ms: i64) -> proto::DataPacket {
    let attributes: HashMap<String, String> = [
        ("lk.segment_id", stream_id),
        ("lk.transcribed_track_id", track_sid),
        ("lk.transcribed_participant_identity", identity),
        ("lk.transcription_final", "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    #[allow(deprecated)]
    packet(Value::StreamHeader(data_stream::Header {
        stream_id: stream_id.to_string(),
        timestamp: now_ms,
        topic: TOPIC.into(),
        mime_type: "text/plain".into(),
        attributes,
        content_header: Some(data_stream::header::ContentHeader::TextHeader(
            data_stream::TextHeader {
                operation_type: data_stream::OperationType::Create as i32,
                generated: true,
                ..Default::default()
            },
        )),
        ..Default::default()
    }))
}

/// Chunk `index` of stream `stream_id`: `text` (UTF-8).
pub fn chunk(stream_id: &str, index: u64, text: &str) -> proto::DataPacket {
    #[allow(deprecated)]
    packet(Value::StreamChunk(data_stream::Chunk {
        stream_id: stream_id.to_string(),
        chunk_index: index,
        content: text.as_bytes().to_vec(),
        ..Default::default()
    }))
}

/// The end of stream `stream_id` (`reason` empty, or `interrupted` for a cut reply).
pub fn trailer(stream_id: &str, reason: &str) -> proto::DataPacket {
    packet(Value::StreamTrailer(data_stream::Trailer {
        stream_id: stream_id.to_string(),
        reason: reason.to_string(),
        attributes: HashMap::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caption_is_a_text_stream_on_the_transcription_topic() {
        let h = header("seg1", "TR_a", "caller_x", 5);
        let Some(Value::StreamHeader(h)) = h.value else {
            panic!("not a header")
        };
        assert_eq!(
            (h.topic.as_str(), h.mime_type.as_str()),
            (TOPIC, "text/plain")
        );
        assert_eq!(h.attributes["lk.transcribed_track_id"], "TR_a");
        assert_eq!(h.attributes["lk.transcription_final"], "true");
        let Some(Value::StreamChunk(c)) = chunk("seg1", 2, "hé").value else {
            panic!("not a chunk")
        };
        assert_eq!((c.chunk_index, c.content), (2, "hé".as_bytes().to_vec()));
        assert!(matches!(
            trailer("seg1", "").value,
            Some(Value::StreamTrailer(_))
        ));
    }
}

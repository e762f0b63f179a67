"""A participant of an agent's room for tests/agents.rs (LiveKit's Python SDK):

    lk_agent_listener.py WS_URL TOKEN [publish]

Joins (with `publish`: publishes a 660 Hz tone), waits for a participant of kind AGENT, listens to its tone (counts loud 10 ms frames over 1 s
and the dominant frequency), sends it a data message and waits for the echo, then stays until the
agent leaves (or stdin closes, or 60 s pass), and leaves the room when stdin closes. Prints JSON lines: {"heard": ...}
once measured, {"agent_left": ...} when the agent leaves.
"""

import asyncio
import json
import sys

import numpy as np
from livekit import rtc


def emit(obj):
    print(json.dumps(obj), flush=True)


async def main(ws_url, token, publish=False):
    room = rtc.Room()
    loop = asyncio.get_running_loop()
    agent_track, echo, left = loop.create_future(), loop.create_future(), loop.create_future()

    @room.on("track_subscribed")
    def _on_track(track, pub, participant):
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not agent_track.done():
            agent_track.set_result((participant, track))

    @room.on("data_received")
    def _on_data(pkt):
        from_agent = pkt.participant and pkt.participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT
        if from_agent and not echo.done():
            echo.set_result((pkt.data.decode(errors="replace"), pkt.topic))

    @room.on("participant_disconnected")
    def _on_left(p):
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not left.done():
            left.set_result(p.identity)

    await room.connect(ws_url, token)
    if publish:
        source = rtc.AudioSource(48000, 1)
        mic = rtc.LocalAudioTrack.create_audio_track("mic", source)
        await room.local_participant.publish_track(mic, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))

        async def pump():
            t = 0
            while True:
                frame = rtc.AudioFrame.create(48000, 1, 480)
                buf = np.frombuffer(frame.data, dtype=np.int16)
                buf[:] = (np.sin(2 * np.pi * 660 * (np.arange(480) + t) / 48000) * 8000).astype(np.int16)
                t += 480
                await source.capture_frame(frame)

        pumping = asyncio.create_task(pump())  # noqa: F841 (runs until the script ends)
    agent, track = await asyncio.wait_for(agent_track, 30)
    stream = rtc.AudioStream(track, sample_rate=48000, num_channels=1)
    loud, samples = 0, []
    end = loop.time() + 1.5
    async for ev in stream:
        d = np.frombuffer(ev.frame.data, dtype=np.int16).astype(np.float64)
        if len(d) and np.sqrt(np.mean(d * d)) > 500:
            loud += 1
            samples.append(d)
        if loop.time() > end:
            break
    await stream.aclose()
    freq = 0.0
    if samples:
        x = np.concatenate(samples[-50:])
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        freq = float(np.argmax(spec) * 48000 / len(x))
    await room.local_participant.publish_data(b"ping", reliable=True, topic="t1")
    text, topic = await asyncio.wait_for(echo, 10)
    emit({"heard": {"agent": agent.identity, "kind": int(agent.kind), "loud_frames": loud, "freq": freq,
                    "echo": text, "topic": topic, "attributes": dict(agent.attributes)}})
    stdin_closed = loop.run_in_executor(None, sys.stdin.read)
    await asyncio.wait([left, stdin_closed], timeout=60, return_when=asyncio.FIRST_COMPLETED)
    emit({"agent_left": left.result() if left.done() else None})
    await stdin_closed
    await room.disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], len(sys.argv) > 3 and sys.argv[3] == "publish"))

"""A participant of an agent's room for tests/agents.rs (LiveKit's Python SDK):

    lk_agent_listener.py WS_URL TOKEN

Joins, waits for a participant of kind AGENT, listens to its tone (counts loud 10 ms frames over 1 s
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


async def main(ws_url, token):
    room = rtc.Room()
    loop = asyncio.get_running_loop()
    agent_track, echo, left = loop.create_future(), loop.create_future(), loop.create_future()

    @room.on("track_subscribed")
    def _on_track(track, pub, participant):
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not agent_track.done():
            agent_track.set_result((participant, track))

    @room.on("data_received")
    def _on_data(pkt):
        if not echo.done():
            echo.set_result((pkt.data.decode(errors="replace"), pkt.topic))

    @room.on("participant_disconnected")
    def _on_left(p):
        if p.kind == rtc.ParticipantKind.PARTICIPANT_KIND_AGENT and not left.done():
            left.set_result(p.identity)

    await room.connect(ws_url, token)
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
    asyncio.run(main(sys.argv[1], sys.argv[2]))

"""One of N participants driven by LiveKit's Python SDK, for tests/python_sdk.rs (the crowd test).

    lk_crowd.py URL TOKEN --tone HZ --others N [--hold S]

Publishes a sine tone at --tone and waits until it hears non-silent audio from N other participants'
tracks (each checked by FFT against the set of frequencies it heard), holds --hold seconds so the others
can finish, then prints one JSON line {identity, heard: {identity: hz}, ms} and exits 0 (all heard) or 1.
With N above three, a v1 client runs out of the three receive sections it creates up front, so the server
has to ask for more (MediaSectionsRequirement).
"""

import argparse
import asyncio
import json
import sys
import time

import numpy as np
from livekit import rtc

RATE = 48000
FRAME = 480


def dominant_hz(samples: np.ndarray) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spec = np.abs(np.fft.rfft(x))
    spec[:5] = 0
    return float(np.argmax(spec)) * RATE / len(samples)


async def tone(source: rtc.AudioSource, hz: float, stop: asyncio.Event) -> None:
    n = 0
    frame = rtc.AudioFrame.create(RATE, 1, FRAME)
    buf = np.frombuffer(frame.data, dtype=np.int16)
    while not stop.is_set():
        t = (np.arange(FRAME) + n) / RATE
        buf[:] = (8000 * np.sin(2 * np.pi * hz * t)).astype(np.int16)
        n += FRAME
        await source.capture_frame(frame)  # paced by the source's queue (real time)


async def listen(track, who: str, heard: dict, done: asyncio.Event, want: int) -> None:
    got = []
    stream = rtc.AudioStream.from_track(track=track, sample_rate=RATE, num_channels=1)
    try:
        async for e in stream:
            s = np.frombuffer(e.frame.data, dtype=np.int16)
            if np.sqrt(np.mean(s.astype(np.float64) ** 2)) > 100:
                got.append(s)
            if sum(len(g) for g in got) >= RATE // 2:
                heard[who] = round(dominant_hz(np.concatenate(got)), 1)
                if len(heard) >= want:
                    done.set()
                break
    finally:
        await stream.aclose()


async def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("token")
    ap.add_argument("--tone", type=float, required=True)
    ap.add_argument("--others", type=int, required=True)
    ap.add_argument("--hold", type=float, default=4.0)
    a = ap.parse_args()
    t0 = time.time()
    room = rtc.Room()
    heard: dict = {}
    done = asyncio.Event()
    stop = asyncio.Event()
    tasks = []

    @room.on("track_subscribed")
    def _sub(track, pub, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO:
            tasks.append(asyncio.ensure_future(listen(track, participant.identity, heard, done, a.others)))

    await room.connect(a.url, a.token)
    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await room.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
    player = asyncio.ensure_future(tone(source, a.tone, stop))
    try:
        await asyncio.wait_for(done.wait(), 40)
    except asyncio.TimeoutError:
        pass
    ok = len(heard) >= a.others
    await asyncio.sleep(a.hold)
    stop.set()
    await player
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    out = {"identity": room.local_participant.identity, "heard": heard, "ok": ok, "ms": round((time.time() - t0) * 1000)}
    # Printed before teardown: the SDK's FFI sometimes aborts while the process exits (after every
    # check), which must not hide what was heard.
    print(json.dumps(out), flush=True)
    await room.disconnect()
    await source.aclose()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

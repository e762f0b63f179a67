"""One participant driven by LiveKit's Python SDK (the Rust-FFI `livekit` package), for tests/python_sdk.rs.

    lk_peer.py URL TOKEN --role a|b --tone HZ --expect HZ [--mode default|v1|v0]

mode: `default` leaves RoomOptions.single_peer_connection unset (the SDK's own choice), `v1` sets it
True, `v0` sets it False (two peer connections). The peer publishes a sine tone at --tone, subscribes to
the other participant, checks the dominant frequency of what it hears is --expect (FFT), sends a reliable
data message on topic "chat", mutes its track once it has heard the other and got its message, and waits
to see the other's track_muted (it then acks on topic "ctl"). Role a disconnects once it has seen b's
mute and b's ack; role b waits for participant_disconnected of a. One JSON line on stdout, then exit 0
(ok) or 1. Timings: connect_ms (room.connect), join_to_first_audio_ms (from just before room.connect to
the first non-silent frame of the other's track).
"""

import argparse
import asyncio
import json
import logging
import sys
import time

import numpy as np
from livekit import rtc

RATE = 48000
FRAME = 480  # 10 ms
SILENT_RMS = 100.0  # int16 units; the tone is sent at amplitude ~8000 (RMS ~5700)
ANALYSE_S = 1.0  # non-silent audio collected before the FFT
STARTED = time.time()  # signal_log times are from here (process start, before the SDK loads)


class SignalNotes(logging.Handler):
    """Keeps the SDK's log lines about the signal path (v1 tried, 404, fallback to v0)."""

    def __init__(self, res: dict):
        super().__init__(logging.DEBUG)
        self.res = res

    def emit(self, record):
        msg = record.getMessage()
        if "/rtc" in msg or " path" in msg or "single peer" in msg.lower():
            at = round((record.created - STARTED) * 1000)
            self.res.setdefault("signal_log", []).append(f"+{at} ms {msg}")
            if "falling back to v0" in msg:
                self.res["fell_back_to_v0"] = True


def dominant_hz(samples: np.ndarray) -> float:
    x = samples.astype(np.float64) * np.hanning(len(samples))
    spec = np.abs(np.fft.rfft(x))
    spec[:5] = 0  # ignore DC
    return float(np.argmax(spec)) * RATE / len(samples)


async def run(a, res: dict) -> None:
    room = rtc.Room()
    ev = {k: asyncio.Event() for k in ("track", "heard", "data", "muted", "ack", "gone")}
    other_track: list = []

    @room.on("track_subscribed")
    def _sub(track, pub, participant):
        if track.kind == rtc.TrackKind.KIND_AUDIO and not other_track:
            res["subscribed_from"] = participant.identity
            other_track.append(track)
            ev["track"].set()

    @room.on("data_received")
    def _data(pkt: rtc.DataPacket):
        sender = pkt.participant.identity if pkt.participant else None
        if pkt.topic == "chat" and "data" not in res:
            res["data"] = {"text": pkt.data.decode(errors="replace"), "from": sender, "topic": pkt.topic}
            ev["data"].set()
        elif pkt.topic == "ctl" and pkt.data == b"saw-mute":
            ev["ack"].set()

    @room.on("track_muted")
    def _muted(participant, pub):
        if participant.identity != room.local_participant.identity and "muted_seen" not in res:
            res["muted_seen"] = {"from": participant.identity, "kind": int(pub.kind)}
            ev["muted"].set()

    @room.on("participant_disconnected")
    def _gone(participant):
        res.setdefault("disconnect_seen", participant.identity)
        ev["gone"].set()

    opts = rtc.RoomOptions()
    if a.mode != "default":
        opts.single_peer_connection = a.mode == "v1"
    t0 = time.monotonic()
    await room.connect(a.url, a.token, opts)
    res["connect_ms"] = round((time.monotonic() - t0) * 1000, 1)
    res["identity"] = room.local_participant.identity

    source = rtc.AudioSource(RATE, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )
    res["published_ms"] = round((time.monotonic() - t0) * 1000, 1)

    async def tone():
        n = 0
        frame = rtc.AudioFrame.create(RATE, 1, FRAME)
        buf = np.frombuffer(frame.data, dtype=np.int16)
        while True:
            t = (np.arange(FRAME) + n) / RATE
            buf[:] = (8000 * np.sin(2 * np.pi * a.tone * t)).astype(np.int16)
            n += FRAME
            await source.capture_frame(frame)  # paced by the source's queue (real time)

    async def listen():
        await ev["track"].wait()
        stream = rtc.AudioStream.from_track(track=other_track[0], sample_rate=RATE, num_channels=1)
        try:
            await analyse(stream)
        except Exception as e:
            res["listen_error"] = f"{type(e).__name__}: {e}"
        finally:
            ev["heard"].set()
            await stream.aclose()

    async def analyse(stream):
        got = []
        frames = 0
        async for e in stream:
            s = np.frombuffer(e.frame.data, dtype=np.int16)
            frames += 1
            if np.sqrt(np.mean(s.astype(np.float64) ** 2)) < SILENT_RMS:
                continue
            if not got:
                res["join_to_first_audio_ms"] = round((time.monotonic() - t0) * 1000, 1)
            got.append(s.copy())
            if sum(len(g) for g in got) >= RATE * ANALYSE_S:
                break
        # skip the first 0.2 s (codec ramp-up) for the analysis
        samples = np.concatenate(got)[RATE // 5 :]
        res["heard_hz"] = round(dominant_hz(samples), 1)
        res["heard_rms"] = round(float(np.sqrt(np.mean(samples.astype(np.float64) ** 2))), 1)
        res["frames_before_analysis"] = frames

    tone_task = asyncio.create_task(tone())
    listen_task = asyncio.create_task(listen())
    try:
        await ev["heard"].wait()
        if "heard_hz" not in res:
            raise RuntimeError(f"listening failed: {res.get('listen_error')}")
        await room.local_participant.publish_data(
            f"hello from {a.role}".encode(), reliable=True, topic="chat"
        )
        await ev["data"].wait()
        track.mute()
        res["muted_own_ms"] = round((time.monotonic() - t0) * 1000, 1)
        await ev["muted"].wait()
        await room.local_participant.publish_data(b"saw-mute", reliable=True, topic="ctl")
        if a.role == "a":
            await ev["ack"].wait()
        else:
            await ev["gone"].wait()
    finally:
        for task in (tone_task, listen_task):
            task.cancel()
        await asyncio.gather(tone_task, listen_task, return_exceptions=True)
        await room.disconnect()
        await source.aclose()
    res["total_ms"] = round((time.monotonic() - t0) * 1000, 1)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("--role", choices=["a", "b"], required=True)
    p.add_argument("--tone", type=float, required=True)
    p.add_argument("--expect", type=float, required=True)
    p.add_argument("--mode", choices=["default", "v1", "v0"], default="default")
    p.add_argument("--timeout", type=float, default=50.0)
    a = p.parse_args()
    res = {"role": a.role, "mode": a.mode, "tone_hz": a.tone, "expect_hz": a.expect, "ok": False}
    res["fell_back_to_v0"] = False
    # The SDK's Rust core logs through the "livekit" logger (level from RUST_LOG; its debug lines
    # only with LIVEKIT_RTC_DEBUG=1): all of it to stderr, the signal-path lines into the JSON too.
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("livekit").addHandler(SignalNotes(res))
    try:
        asyncio.run(asyncio.wait_for(run(a, res), a.timeout))
        res["ok"] = True
    except BaseException as e:  # reported with the partial results (which step it got to)
        res["error"] = f"{type(e).__name__}: {e}"
    print(json.dumps(res), flush=True)
    sys.exit(0 if res["ok"] else 1)


if __name__ == "__main__":
    main()

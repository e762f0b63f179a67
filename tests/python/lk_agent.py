"""A minimal LiveKit Agents worker (livekit-agents 1.3) for tests/agents.rs: its job publishes a
440 Hz tone and echoes every data message back with an "echo:" prefix, on the same topic.

    LIVEKIT_URL=ws://... LIVEKIT_API_KEY=... LIVEKIT_API_SECRET=... AGENT_NAME=tone-agent \
        lk_agent.py dev --no-reload

Run the way a team runs its agent (the agents CLI, which registers on the server's /agent socket).
AGENT_TYPE=publisher registers it for publisher jobs. `dev` mode: no load threshold (a busy test machine must not make the worker report itself full),
and stopping it (SIGINT/SIGTERM) shuts its jobs down at once: each agent leaves its room.
"""

import asyncio
import math
import os

import numpy as np
from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, cli
from livekit.agents.worker import ServerType

SR, SPF = 48000, 480

server = AgentServer(load_fnc=lambda: 0.0)


# AGENT_TYPE=publisher: one job per publishing participant (its identity in the agent's
# `for_identity` attribute), else one job per room.
PUBLISHER = os.environ.get("AGENT_TYPE") == "publisher"


@server.rtc_session(
    agent_name=os.environ.get("AGENT_NAME", ""),
    type=ServerType.PUBLISHER if PUBLISHER else ServerType.ROOM,
)
async def entrypoint(ctx: JobContext):
    await ctx.connect(auto_subscribe=AutoSubscribe.SUBSCRIBE_NONE)
    if ctx.job.participant.identity:
        await ctx.room.local_participant.set_attributes({"for_identity": ctx.job.participant.identity})
    source = rtc.AudioSource(SR, 1)
    track = rtc.LocalAudioTrack.create_audio_track("tone", source)
    await ctx.room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
    )

    @ctx.room.on("data_received")
    def _on_data(pkt: rtc.DataPacket):
        asyncio.create_task(
            ctx.room.local_participant.publish_data(b"echo:" + pkt.data, reliable=True, topic=pkt.topic or "")
        )

    t = 0
    while ctx.room.isconnected():
        frame = rtc.AudioFrame.create(SR, 1, SPF)
        buf = np.frombuffer(frame.data, dtype=np.int16)
        buf[:] = (np.sin(2 * math.pi * 440 * (np.arange(SPF) + t) / SR) * 8000).astype(np.int16)
        t += SPF
        await source.capture_frame(frame)


if __name__ == "__main__":
    cli.run_app(server)

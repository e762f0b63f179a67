"""LiveKit's Python server SDK (`livekit-api` RoomServiceClient) against Parlor, for tests/python_sdk.rs.

    lk_room_service.py HTTP_URL WS_URL API_KEY API_SECRET

Creates a room through RoomService, joins it with two real participants (LiveKit's Python `livekit.rtc`
SDK: a watcher that does not auto-subscribe, a speaker that publishes a tone), and checks what the
server SDK sees and what the participants see: create_room (idempotent; its metadata is the room's),
list_rooms, list_participants, get_participant, update_participant (the participant sees its new metadata
and name; attributes; a revoked canPublish unpublishes the speaker's track), update_subscriptions (the
watcher gets and loses the speaker's track), mute_published_track (the watcher sees it muted, the
speaker's own publication is muted), update_room_metadata (seen by the watcher), send_data (received by
the participant, from no participant, on its topic), remove_participant (the participant is disconnected
with PARTICIPANT_REMOVED), delete_room (the room is gone), and a token without the grant refused with
Twirp's permission_denied. One JSON line on stdout ({"ok": ..., "steps": {...}}), then exit 0 or 1.
"""

import asyncio
import json
import math
import sys

from livekit import api, rtc


def future():
    return asyncio.get_running_loop().create_future()


async def tone(source, stop):
    """A 440 Hz tone in 10 ms frames until `stop` is set."""
    n = 0
    while not stop.is_set():
        frame = rtc.AudioFrame.create(48000, 1, 480)
        samples = frame.data
        for i in range(480):
            samples[i] = int(8000 * math.sin(2 * math.pi * 440 * (n + i) / 48000))
        n += 480
        await source.capture_frame(frame)


async def outcome(fut, timeout):
    """`fut`'s result, or None after `timeout` s (so one missing effect does not hide the others)."""
    try:
        return await asyncio.wait_for(fut, timeout)
    except asyncio.TimeoutError:
        return None


async def loud_frames(stream, seconds):
    """How many 10 ms frames of `stream` carry sound (RMS over 500) within `seconds`."""
    n = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    it = stream.__aiter__()
    while (left := end - loop.time()) > 0:
        try:
            ev = await asyncio.wait_for(it.__anext__(), left)
        except (asyncio.TimeoutError, StopAsyncIteration):
            break
        d = ev.frame.data
        if len(d) and math.sqrt(sum(x * x for x in d) / len(d)) > 500:
            n += 1
    return n


async def speaker_and_tracks(lk, ws_url, key, secret, room_name, watcher, steps):
    """The speaker publishes; RoomService changes of subscriptions, mute, metadata, attributes and
    permission, each seen by the watcher (and the speaker)."""
    published, subscribed = future(), future()
    muted, room_meta, attrs, unpublished = future(), future(), future(), future()
    watcher.on("track_published", lambda pub, p: published.done() or published.set_result(pub.sid))
    watcher.on("track_subscribed", lambda t, pub, p: subscribed.done() or subscribed.set_result((pub.sid, t)))
    watcher.on("track_muted", lambda p, pub: muted.done() or muted.set_result(pub.sid))
    watcher.on("room_metadata_changed", lambda old, new: room_meta.done() or room_meta.set_result(new))
    watcher.on(
        "participant_attributes_changed",
        lambda changed, p: p.identity == "py-speaker" and not attrs.done() and attrs.set_result(dict(p.attributes)),
    )
    watcher.on("track_unpublished", lambda pub, p: unpublished.done() or unpublished.set_result(pub.sid))

    token = (
        api.AccessToken(key, secret)
        .with_identity("py-speaker")
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .to_jwt()
    )
    speaker = rtc.Room()
    speaker_lost = future()
    # LiveKit's Rust core (under the Python SDK) does not act on TrackUnpublishedResponse; it sees
    # its own permission change (the webrtc-rs test checks the TrackUnpublishedResponse itself).
    speaker.on(
        "participant_permissions_changed",
        lambda p, perm: speaker_lost.done() or speaker_lost.set_result(perm.can_publish),
    )
    await speaker.connect(ws_url, token)
    source = rtc.AudioSource(48000, 1)
    stop = asyncio.Event()
    pump = asyncio.create_task(tone(source, stop))
    try:
        track = rtc.LocalAudioTrack.create_audio_track("tone", source)
        pub = await speaker.local_participant.publish_track(track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE))
        sid = await asyncio.wait_for(published, 10)
        steps["published"] = sid == pub.sid

        # Server-side subscription of a watcher that does not auto-subscribe, then its removal.
        await lk.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(room=room_name, identity="py-watcher", track_sids=[sid], subscribe=True)
        )
        got_sid, remote = await asyncio.wait_for(subscribed, 15)
        stream = rtc.AudioStream(remote, sample_rate=48000, num_channels=1)
        steps["subscribed"] = got_sid == sid
        steps["tone_heard"] = await loud_frames(stream, 1.0)
        await lk.room.update_subscriptions(
            api.UpdateSubscriptionsRequest(room=room_name, identity="py-watcher", track_sids=[sid], subscribe=False)
        )
        # Frames already queued in the stream, and the decoder's fade-out, come first.
        await loud_frames(stream, 1.5)
        steps["after_unsubscribe"] = await loud_frames(stream, 1.0)
        await stream.aclose()

        reply = await lk.room.mute_published_track(
            api.MuteRoomTrackRequest(room=room_name, identity="py-speaker", track_sid=sid, muted=True)
        )
        seen = await asyncio.wait_for(muted, 10)
        await asyncio.sleep(0.5)
        steps["mute"] = {"reply": reply.track.muted, "seen": seen == sid, "speaker_muted": pub.muted}
        try:
            await lk.room.mute_published_track(
                api.MuteRoomTrackRequest(room=room_name, identity="py-speaker", track_sid=sid, muted=False)
            )
            steps["remote_unmute"] = "allowed"
        except api.TwirpError as e:
            steps["remote_unmute"] = e.code

        r = await lk.room.update_room_metadata(api.UpdateRoomMetadataRequest(room=room_name, metadata="m1"))
        steps["room_metadata"] = {"reply": r.metadata, "seen": await asyncio.wait_for(room_meta, 10), "room": watcher.metadata}

        await lk.room.update_participant(
            api.UpdateParticipantRequest(room=room_name, identity="py-speaker", attributes={"role": "host"})
        )
        steps["attributes"] = await asyncio.wait_for(attrs, 10)

        after = await lk.room.update_participant(
            api.UpdateParticipantRequest(
                room=room_name,
                identity="py-speaker",
                permission=api.ParticipantPermission(can_subscribe=True, can_publish=False, can_publish_data=True),
            )
        )
        steps["revoked"] = {
            "reply_tracks": len(after.tracks),
            "seen": await outcome(unpublished, 10) == sid,
            "speaker_told": await outcome(speaker_lost, 10) is False,
        }
        p = await lk.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="py-speaker"))
        steps["revoked"]["listed_tracks"] = len(p.tracks)
        steps["revoked"]["can_publish"] = p.permission.can_publish
    finally:
        stop.set()
        await pump
        await speaker.disconnect()


async def main(http_url, ws_url, key, secret):
    res = {"ok": False, "steps": {}}
    steps = res["steps"]
    lk = api.LiveKitAPI(http_url, key, secret)
    room_name = "py-room-service"
    try:
        room = await lk.room.create_room(api.CreateRoomRequest(name=room_name, max_participants=5, metadata="m0"))
        again = await lk.room.create_room(api.CreateRoomRequest(name=room_name))
        steps["create_room"] = {"sid": room.sid, "max_participants": room.max_participants, "idempotent": again.sid == room.sid}

        token = (
            api.AccessToken(key, secret)
            .with_identity("py-watcher")
            .with_grants(api.VideoGrants(room_join=True, room=room_name))
            .to_jwt()
        )
        watcher = rtc.Room()
        disconnected = asyncio.get_running_loop().create_future()

        @watcher.on("disconnected")
        def _on_disconnected(reason):
            if not disconnected.done():
                disconnected.set_result(reason)

        got_data = asyncio.get_running_loop().create_future()

        @watcher.on("data_received")
        def _on_data(pkt):
            if not got_data.done():
                got_data.set_result(pkt)

        await watcher.connect(ws_url, token, rtc.RoomOptions(auto_subscribe=False))
        steps["joined_sid"] = watcher.name == room_name and (await watcher.sid) == room.sid
        steps["joined_metadata"] = watcher.metadata

        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
        steps["list_rooms"] = [(r.name, r.num_participants) for r in rooms.rooms]
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
        steps["list_participants"] = [p.identity for p in parts.participants]
        p = await lk.room.get_participant(api.RoomParticipantIdentity(room=room_name, identity="py-watcher"))
        steps["get_participant"] = p.identity

        # A token with only a join grant may not administer the room.
        denied = None
        async with api.LiveKitAPI(http_url, token=token) as weak:
            try:
                await weak.room.list_rooms(api.ListRoomsRequest())
            except api.TwirpError as e:
                denied = {"code": e.code, "status": e.status}
        steps["denied"] = denied

        meta_seen = asyncio.get_running_loop().create_future()

        @watcher.on("participant_metadata_changed")
        def _on_meta(participant, old, new):
            if participant.identity == "py-watcher" and not meta_seen.done():
                meta_seen.set_result(new)

        updated = await lk.room.update_participant(
            api.UpdateParticipantRequest(room=room_name, identity="py-watcher", metadata="vip", name="Watcher")
        )
        seen = await asyncio.wait_for(meta_seen, 10)
        steps["update_participant"] = {"reply": [updated.metadata, updated.name], "seen": seen, "name": watcher.local_participant.name}

        await lk.room.send_data(
            api.SendDataRequest(room=room_name, data=b"from the server", kind=0, topic="srv", destination_identities=["py-watcher"])
        )
        pkt = await asyncio.wait_for(got_data, 10)
        steps["data"] = {"text": pkt.data.decode(), "topic": pkt.topic, "from": pkt.participant.identity if pkt.participant else None}

        await speaker_and_tracks(lk, ws_url, key, secret, room_name, watcher, steps)

        await lk.room.remove_participant(api.RoomParticipantIdentity(room=room_name, identity="py-watcher"))
        reason = await asyncio.wait_for(disconnected, 10)
        try:
            steps["removed_reason"] = rtc.DisconnectReason.Name(reason)
        except Exception:
            steps["removed_reason"] = str(reason)
        parts = await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
        steps["after_remove"] = [p.identity for p in parts.participants]

        await lk.room.delete_room(api.DeleteRoomRequest(room=room_name))
        rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
        steps["after_delete"] = [r.name for r in rooms.rooms]

        res["ok"] = (
            steps["create_room"]["idempotent"]
            and steps["create_room"]["max_participants"] == 5
            and steps["joined_sid"] is True
            and steps["joined_metadata"] == "m0"
            and steps["published"] is True
            and steps["subscribed"] is True
            and steps["tone_heard"] > 50
            and steps["after_unsubscribe"] == 0
            and steps["mute"] == {"reply": True, "seen": True, "speaker_muted": True}
            and steps["remote_unmute"] == "failed_precondition"
            and steps["room_metadata"] == {"reply": "m1", "seen": "m1", "room": "m1"}
            and steps["attributes"] == {"role": "host"}
            and steps["revoked"] == {"reply_tracks": 0, "seen": True, "speaker_told": True, "listed_tracks": 0, "can_publish": False}
            and steps["list_rooms"] == [(room_name, 1)]
            and steps["list_participants"] == ["py-watcher"]
            and steps["get_participant"] == "py-watcher"
            and steps["update_participant"] == {"reply": ["vip", "Watcher"], "seen": "vip", "name": "Watcher"}
            and steps["data"] == {"text": "from the server", "topic": "srv", "from": None}
            and denied is not None
            and denied["code"] == "permission_denied"
            and "PARTICIPANT_REMOVED" in steps["removed_reason"]
            and steps["after_remove"] == []
            and steps["after_delete"] == []
        )
    except Exception as e:  # reported, judged by the Rust side
        res["error"] = f"{type(e).__name__}: {e}"
    finally:
        await lk.aclose()
    print(json.dumps(res), flush=True)
    return 0 if res["ok"] else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(*sys.argv[1:5])))

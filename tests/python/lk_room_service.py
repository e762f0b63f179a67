"""LiveKit's Python server SDK (`livekit-api` RoomServiceClient) against Parlor, for tests/python_sdk.rs.

    lk_room_service.py HTTP_URL WS_URL API_KEY API_SECRET

Creates a room through RoomService, joins it with a real participant (LiveKit's Python `livekit.rtc`
SDK), and checks what the server SDK sees and what the participant sees: create_room (idempotent),
list_rooms, list_participants, get_participant, update_participant (the participant sees its new metadata
and name), send_data (received by the participant, from no
participant, on its topic), remove_participant (the participant is disconnected
with PARTICIPANT_REMOVED), delete_room (the room is gone), and a token without the grant refused with
Twirp's permission_denied. One JSON line on stdout ({"ok": ..., "steps": {...}}), then exit 0 or 1.
"""

import asyncio
import json
import sys

from livekit import api, rtc


async def main(http_url, ws_url, key, secret):
    res = {"ok": False, "steps": {}}
    steps = res["steps"]
    lk = api.LiveKitAPI(http_url, key, secret)
    room_name = "py-room-service"
    try:
        room = await lk.room.create_room(api.CreateRoomRequest(name=room_name, max_participants=5))
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

        await watcher.connect(ws_url, token)
        steps["joined_sid"] = watcher.name == room_name and (await watcher.sid) == room.sid

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

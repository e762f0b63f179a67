-- LiveKit CreateRoom options of a stored room (RoomService.CreateRoom, POST /api/rooms):
-- empty_timeout: seconds the room stays open while nobody has joined it (0: the server default);
-- departure_timeout: seconds it stays open after its last participant left (0: the server default);
-- metadata: the room's metadata, sent to every participant (RoomService.UpdateRoomMetadata changes it).
ALTER TABLE rooms ADD COLUMN empty_timeout BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN departure_timeout BIGINT NOT NULL DEFAULT 0;
ALTER TABLE rooms ADD COLUMN metadata TEXT NOT NULL DEFAULT '';

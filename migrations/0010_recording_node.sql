-- Multi-node mode: the node whose disk holds the recording's files (its `server.node_name`);
-- '' for recordings made in single-node mode (the files are on whichever node serves the request).
-- Start-up repair and interrupted deletes of a node touch only its own recordings (and the '' ones).
ALTER TABLE recordings ADD COLUMN node TEXT NOT NULL DEFAULT '';

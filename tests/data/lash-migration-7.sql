-- A session database written by lash at migration 7 (1-node rows), branch main at
-- 599e5b9: session 'old', four commits (a root frame F0 with turn 1; turn 2; a compaction
-- commit: a plugin node in F0, a boundary opening F1 and its summary; turn 3 in F1), made of
-- the nodes tests/test_sqlite_node_batches.py builds. Load with sqlite3's executescript.
PRAGMA application_id = 1279349576;
PRAGMA user_version = 7;
BEGIN TRANSACTION;
CREATE TABLE blobs (
        hash TEXT PRIMARY KEY NOT NULL,
        data TEXT NOT NULL
    );
CREATE TABLE cancel_requests (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        origin TEXT NOT NULL,
        reason TEXT,
        requested_at REAL NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    ) WITHOUT ROWID;
CREATE TABLE commands (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        key TEXT NOT NULL,
        name TEXT NOT NULL,
        args TEXT NOT NULL,
        source TEXT,
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        applied_at REAL,
        PRIMARY KEY (session_id, seq)
    );
CREATE TABLE events (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        type TEXT NOT NULL,
        data TEXT NOT NULL,
        at REAL NOT NULL,
        PRIMARY KEY (session_id, seq)
    ) WITHOUT ROWID;
CREATE TABLE inputs (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        key TEXT,
        text TEXT NOT NULL,
        items TEXT,
        ingress TEXT NOT NULL,
        source TEXT,
        state TEXT NOT NULL,
        claim_token INTEGER,
        created_at REAL NOT NULL,
        settled_at REAL,
        turn_id TEXT,
        PRIMARY KEY (session_id, seq)
    );
CREATE TABLE lash_migrations (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    lash_version TEXT NOT NULL
);
INSERT INTO "lash_migrations" VALUES(1,'initial schema',1.796611094205714941e+09,'0.1.0');
INSERT INTO "lash_migrations" VALUES(2,'one-statement commit',1.796611094205714941e+09,'0.1.0');
INSERT INTO "lash_migrations" VALUES(3,'mailbox',1.796611094205714941e+09,'0.1.0');
INSERT INTO "lash_migrations" VALUES(4,'processes',1.796611094205714941e+09,'0.1.0');
INSERT INTO "lash_migrations" VALUES(5,'child sessions',1.796611094205714941e+09,'0.1.0');
INSERT INTO "lash_migrations" VALUES(6,'media blobs',1.796611094205714941e+09,'0.1.0');
INSERT INTO "lash_migrations" VALUES(7,'node rows hold the body only',1.796611094205714941e+09,'0.1.0');
CREATE TABLE media_blobs (
        sha256 TEXT PRIMARY KEY,
        data BLOB NOT NULL,
        size INTEGER NOT NULL,
        created_at REAL NOT NULL
    );
CREATE TABLE nodes (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        node_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        frame_id TEXT NOT NULL,
        turn INTEGER NOT NULL,
        data TEXT NOT NULL,
        PRIMARY KEY (session_id, seq)
    );
INSERT INTO "nodes" VALUES('old',0,'f0','frame','F0',0,'{"parent_id":null,"previous_frame_id":null,"reason":"root","summary":null}');
INSERT INTO "nodes" VALUES('old',1,'u1','user','F0',1,'{"parent_id":null,"text":"hi 1","items":[]}');
INSERT INTO "nodes" VALUES('old',2,'a1','assistant','F0',1,'{"parent_id":"u1","text":"","tool_calls":[{"id":"c1","name":"echo","arguments":{"text":"x1"},"invalid_arguments":null}],"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0},"model":null}');
INSERT INTO "nodes" VALUES('old',3,'k1','tool_call','F0',1,'{"parent_id":"a1","call":{"id":"c1","name":"echo","arguments":{"text":"x1"},"invalid_arguments":null},"plugin":null}');
INSERT INTO "nodes" VALUES('old',4,'r1','tool_result','F0',1,'{"parent_id":"k1","call_id":"c1","name":"echo","content":"x1","is_error":false,"projected":null}');
INSERT INTO "nodes" VALUES('old',5,'b1','assistant','F0',1,'{"parent_id":"r1","text":"done 1","tool_calls":[],"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0},"model":null}');
INSERT INTO "nodes" VALUES('old',6,'o1','outcome','F0',1,'{"parent_id":"b1","turn_id":"t1","outcome":"completed","reason":null,"detail":null,"error":null,"cancelled_by":null}');
INSERT INTO "nodes" VALUES('old',7,'u2','user','F0',2,'{"parent_id":null,"text":"hi 2","items":[]}');
INSERT INTO "nodes" VALUES('old',8,'a2','assistant','F0',2,'{"parent_id":"u2","text":"","tool_calls":[{"id":"c2","name":"echo","arguments":{"text":"x2"},"invalid_arguments":null}],"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0},"model":null}');
INSERT INTO "nodes" VALUES('old',9,'k2','tool_call','F0',2,'{"parent_id":"a2","call":{"id":"c2","name":"echo","arguments":{"text":"x2"},"invalid_arguments":null},"plugin":null}');
INSERT INTO "nodes" VALUES('old',10,'r2','tool_result','F0',2,'{"parent_id":"k2","call_id":"c2","name":"echo","content":"x2","is_error":false,"projected":null}');
INSERT INTO "nodes" VALUES('old',11,'b2','assistant','F0',2,'{"parent_id":"r2","text":"done 2","tool_calls":[],"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0},"model":null}');
INSERT INTO "nodes" VALUES('old',12,'o2','outcome','F0',2,'{"parent_id":"b2","turn_id":"t2","outcome":"completed","reason":null,"detail":null,"error":null,"cancelled_by":null}');
INSERT INTO "nodes" VALUES('old',13,'pc1','plugin','F0',2,'{"parent_id":null,"plugin":"compaction","kind":"note","data":{"n":1}}');
INSERT INTO "nodes" VALUES('old',14,'fc1','frame','F1',2,'{"parent_id":null,"previous_frame_id":"F0","reason":"compaction","summary":"summary c1"}');
INSERT INTO "nodes" VALUES('old',15,'sc1','user','F1',2,'{"parent_id":"fc1","text":"summary c1","items":[]}');
INSERT INTO "nodes" VALUES('old',16,'u3','user','F1',3,'{"parent_id":null,"text":"hi 3","items":[]}');
INSERT INTO "nodes" VALUES('old',17,'a3','assistant','F1',3,'{"parent_id":"u3","text":"","tool_calls":[{"id":"c3","name":"echo","arguments":{"text":"x3"},"invalid_arguments":null}],"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0},"model":null}');
INSERT INTO "nodes" VALUES('old',18,'k3','tool_call','F1',3,'{"parent_id":"a3","call":{"id":"c3","name":"echo","arguments":{"text":"x3"},"invalid_arguments":null},"plugin":null}');
INSERT INTO "nodes" VALUES('old',19,'r3','tool_result','F1',3,'{"parent_id":"k3","call_id":"c3","name":"echo","content":"x3","is_error":false,"projected":null}');
INSERT INTO "nodes" VALUES('old',20,'b3','assistant','F1',3,'{"parent_id":"r3","text":"done 3","tool_calls":[],"usage":{"input_tokens":0,"output_tokens":0,"cached_tokens":0},"model":null}');
INSERT INTO "nodes" VALUES('old',21,'o3','outcome','F1',3,'{"parent_id":"b3","turn_id":"t3","outcome":"completed","reason":null,"detail":null,"error":null,"cancelled_by":null}');
CREATE TABLE plugin_states (
        session_id TEXT NOT NULL,
        plugin TEXT NOT NULL,
        blob_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, plugin)
    ) WITHOUT ROWID;
CREATE TABLE processes (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        session_id TEXT,
        status TEXT NOT NULL,
        key TEXT,
        recovery TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL,
        timeout REAL,
        source TEXT,
        owner TEXT,
        token INTEGER NOT NULL DEFAULT 0,
        expires_at REAL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        cancel_requested TEXT,
        notified INTEGER NOT NULL DEFAULT 0,
        payload TEXT NOT NULL,
        result TEXT,
        error TEXT,
        progress TEXT
    );
CREATE TABLE sessions (
        session_id TEXT PRIMARY KEY NOT NULL,
        revision INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL DEFAULT 0,
        turns INTEGER NOT NULL DEFAULT 0,
        next_seq INTEGER NOT NULL DEFAULT 0,
        frame_start INTEGER NOT NULL DEFAULT 0,
        last_user_message TEXT,
        config_hash TEXT,
        protocol_options_hash TEXT,
        pending_hash TEXT,
        lease_owner TEXT,
        lease_token INTEGER NOT NULL DEFAULT 0,
        lease_expires_at REAL NOT NULL DEFAULT 0
    , status TEXT, running_turn TEXT, input_seq INTEGER NOT NULL DEFAULT 0, command_seq INTEGER NOT NULL DEFAULT 0, event_seq INTEGER NOT NULL DEFAULT 0, events_at REAL NOT NULL DEFAULT 0, parent_id TEXT);
INSERT INTO "sessions" VALUES('old',4,1.79661109424803972249e+09,1.79661109424926424028e+09,3,22,14,'hi 3',NULL,NULL,NULL,'w',4,0.0,'completed',NULL,0,0,0,1.79661109420132708547e+09,NULL);
CREATE TABLE turn_records (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        turn_index INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        revision INTEGER NOT NULL,
        reason TEXT,
        result TEXT NOT NULL,
        committed_at REAL NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    ) WITHOUT ROWID;
CREATE TABLE usage_ledger (
        session_id TEXT NOT NULL,
        revision INTEGER NOT NULL,
        source TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        recorded_at REAL NOT NULL,
        PRIMARY KEY (session_id, revision, source)
    ) WITHOUT ROWID;
CREATE TABLE usage_totals (
        session_id TEXT NOT NULL,
        source TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        PRIMARY KEY (session_id, source)
    ) WITHOUT ROWID;
CREATE INDEX plugin_states_by_blob ON plugin_states (blob_hash);
CREATE INDEX sessions_by_config ON sessions (config_hash);
CREATE UNIQUE INDEX inputs_by_id ON inputs (session_id, id);
CREATE UNIQUE INDEX inputs_by_key ON inputs (session_id, key) WHERE key IS NOT NULL;
CREATE INDEX inputs_open ON inputs (session_id, seq)
        WHERE state IN ('pending', 'claimed');
CREATE UNIQUE INDEX commands_by_id ON commands (session_id, id);
CREATE UNIQUE INDEX commands_by_key ON commands (session_id, key);
CREATE INDEX commands_pending ON commands (session_id, seq) WHERE state = 'pending';
CREATE VIEW lease_requests (session_id, owner, now, expires_at, take_over_owner, take_over_token, turn, events)
        AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER apply_lease_request INSTEAD OF INSERT ON lease_requests BEGIN
    INSERT OR IGNORE INTO sessions (session_id) VALUES (NEW.session_id);
    SELECT RAISE(ABORT, 'lash: another owner holds the lease of the session') FROM sessions WHERE session_id = NEW.session_id
        AND lease_owner IS NOT NULL AND lease_owner != NEW.owner AND lease_expires_at > NEW.now
        AND NOT (lease_owner IS NEW.take_over_owner AND lease_token IS NEW.take_over_token);
    INSERT INTO events (session_id, seq, type, data, at)
        SELECT NEW.session_id, h.event_seq + key + 1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), NEW.now
        FROM sessions AS h, json_each(NEW.events) WHERE h.session_id = NEW.session_id;
    UPDATE sessions SET
        lease_token = CASE WHEN lease_owner = NEW.owner AND lease_expires_at > NEW.now
            THEN lease_token ELSE lease_token + 1 END,
        lease_owner = NEW.owner, lease_expires_at = NEW.expires_at, running_turn = NEW.turn,
        event_seq = event_seq + COALESCE(json_array_length(NEW.events), 0), events_at = NEW.now
        WHERE session_id = NEW.session_id;
END;
CREATE VIEW input_requests (session_id, id, key, text, items, ingress, source, created_at, event)
        AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER apply_input_request INSTEAD OF INSERT ON input_requests BEGIN
    SELECT RAISE(ABORT, 'lash: the key was used with other content') FROM inputs WHERE NEW.key IS NOT NULL AND session_id = NEW.session_id AND key = NEW.key
        AND NOT (text IS NEW.text AND items IS NEW.items AND ingress IS NEW.ingress);
    INSERT INTO sessions (session_id, input_seq, event_seq, events_at)
        SELECT NEW.session_id, 1, 1, NEW.created_at WHERE NOT EXISTS (SELECT 1 FROM inputs WHERE NEW.key IS NOT NULL AND session_id = NEW.session_id AND key = NEW.key)
        ON CONFLICT (session_id) DO UPDATE SET input_seq = input_seq + 1,
            event_seq = event_seq + 1, events_at = excluded.events_at;
    INSERT INTO inputs (session_id, seq, id, key, text, items, ingress, source,
        state, created_at) SELECT NEW.session_id, input_seq, NEW.id, NEW.key, NEW.text,
        NEW.items, NEW.ingress, NEW.source, 'pending', NEW.created_at FROM sessions
        WHERE session_id = NEW.session_id AND NOT EXISTS (SELECT 1 FROM inputs WHERE NEW.key IS NOT NULL AND session_id = NEW.session_id AND key = NEW.key);
    INSERT INTO events (session_id, seq, type, data, at)
        SELECT NEW.session_id, h.event_seq, 'input_queued',
            json_set(NEW.event, '$.input.seq', h.input_seq), NEW.created_at
        FROM sessions AS h WHERE h.session_id = NEW.session_id AND EXISTS (SELECT 1 FROM inputs
            WHERE session_id = NEW.session_id AND seq = h.input_seq AND id = NEW.id);
END;
CREATE VIEW input_updates (session_id, ids, state, claim_token, now, events)
        AS SELECT NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER apply_input_update INSTEAD OF INSERT ON input_updates BEGIN
    UPDATE inputs SET state = NEW.state, claim_token = NEW.claim_token,
        settled_at = CASE WHEN NEW.state = 'cancelled' THEN NEW.now ELSE settled_at END
        WHERE session_id = NEW.session_id AND id IN (SELECT value FROM json_each(NEW.ids));
    INSERT INTO events (session_id, seq, type, data, at)
        SELECT NEW.session_id, h.event_seq + key + 1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), NEW.now
        FROM sessions AS h, json_each(NEW.events) WHERE h.session_id = NEW.session_id;
    UPDATE sessions SET event_seq = event_seq + COALESCE(json_array_length(NEW.events), 0),
        events_at = NEW.now WHERE session_id = NEW.session_id;
END;
CREATE UNIQUE INDEX processes_by_key ON processes (key) WHERE key IS NOT NULL;
CREATE INDEX processes_by_session ON processes (session_id, seq) WHERE session_id IS NOT NULL;
CREATE INDEX processes_by_kind ON processes (kind, seq);
CREATE INDEX processes_pending ON processes (seq) WHERE status = 'pending';
CREATE INDEX processes_claimed ON processes (expires_at)
        WHERE status = 'running' AND expires_at IS NOT NULL;
CREATE INDEX processes_unnotified ON processes (seq)
        WHERE notified = 0 AND finished_at IS NOT NULL;
CREATE VIEW commit_requests (session_id, expected_revision, expected_created_at, expected_updated_at, expected_turns, expected_next_seq, expected_frame_start, expected_last_user_message, expected_config_hash, expected_status, lease_owner, lease_token, revision, created_at, updated_at, turns, next_seq, frame_start, last_user_message, config_hash, status, replace, nodes, blobs, states, usage, released, claimed, applied, turn_id, turn_index, turn_outcome, turn_reason, turn_result, events, parent_id, rollup, release)
        AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER apply_commit_request INSTEAD OF INSERT ON commit_requests BEGIN
    SELECT RAISE(ABORT, 'lash: the session head is not the one this commit was computed from') WHERE NOT EXISTS (
        SELECT 1 FROM sessions WHERE session_id = NEW.session_id
        AND revision IS NEW.expected_revision AND created_at IS NEW.expected_created_at AND updated_at IS NEW.expected_updated_at AND turns IS NEW.expected_turns AND next_seq IS NEW.expected_next_seq AND frame_start IS NEW.expected_frame_start AND last_user_message IS NEW.expected_last_user_message AND config_hash IS NEW.expected_config_hash AND status IS NEW.expected_status 
        AND lease_owner = NEW.lease_owner AND lease_token = NEW.lease_token
        AND lease_expires_at != 0);
    SELECT RAISE(ABORT, 'lash: an input this commit settles is not claimed by its lease') WHERE NEW.claimed IS NOT NULL
        AND NOT (SELECT COUNT(*) FROM inputs WHERE session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each(NEW.claimed)) AND state = 'claimed' AND claim_token = NEW.lease_token)
        = json_array_length(NEW.claimed);
    SELECT RAISE(ABORT, 'lash: a command this commit applies is not pending') WHERE NEW.applied IS NOT NULL
        AND NOT (SELECT COUNT(*) FROM commands WHERE session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each(NEW.applied)) AND state = 'pending')
        = json_array_length(NEW.applied);
    SELECT RAISE(ABORT, 'lash: a turn with this id is committed already') WHERE NEW.turn_id IS NOT NULL
        AND EXISTS (SELECT 1 FROM turn_records WHERE session_id = NEW.session_id
        AND turn_id = NEW.turn_id);
    DELETE FROM nodes WHERE NEW.replace AND session_id = NEW.session_id;
    DELETE FROM plugin_states WHERE NEW.replace AND session_id = NEW.session_id;
    DELETE FROM usage_ledger WHERE NEW.replace AND session_id = NEW.session_id;
    DELETE FROM usage_totals WHERE NEW.replace AND session_id = NEW.session_id;
    INSERT INTO nodes (session_id, seq, node_id, kind, frame_id, turn, data)
        SELECT NEW.session_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(NEW.nodes);
    INSERT OR IGNORE INTO blobs (hash, data)
        SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(NEW.blobs);
    INSERT INTO plugin_states (session_id, plugin, blob_hash)
        SELECT NEW.session_id, json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(NEW.states) WHERE 1
        ON CONFLICT (session_id, plugin) DO UPDATE SET blob_hash = excluded.blob_hash;
    INSERT INTO usage_ledger (session_id, revision, source, input_tokens,
        output_tokens, cached_tokens, recorded_at)
        SELECT NEW.session_id, NEW.revision, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), NEW.updated_at
        FROM json_each(NEW.usage);
    INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens,
        cached_tokens) SELECT NEW.session_id, json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]') FROM json_each(NEW.usage) WHERE 1
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cached_tokens = cached_tokens + excluded.cached_tokens;
    INSERT INTO usage_totals (session_id, source, input_tokens, output_tokens,
        cached_tokens) SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'), json_extract(value, '$[3]'), json_extract(value, '$[4]') FROM json_each(NEW.rollup) WHERE NEW.rollup IS NOT NULL
        AND EXISTS (SELECT 1 FROM sessions AS a WHERE a.session_id = json_extract(value, '$[0]'))
        ON CONFLICT (session_id, source) DO UPDATE SET
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cached_tokens = cached_tokens + excluded.cached_tokens;
    UPDATE inputs SET state = 'completed', settled_at = NEW.updated_at,
        turn_id = NEW.turn_id, claim_token = NULL
        WHERE NEW.claimed IS NOT NULL AND session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each(NEW.claimed));
    UPDATE commands SET state = 'applied', applied_at = NEW.updated_at
        WHERE NEW.applied IS NOT NULL AND session_id = NEW.session_id
        AND id IN (SELECT value FROM json_each(NEW.applied));
    INSERT INTO turn_records (session_id, turn_id, turn_index, outcome, revision,
        reason, result, committed_at) SELECT NEW.session_id, NEW.turn_id, NEW.turn_index,
        NEW.turn_outcome, NEW.revision, NEW.turn_reason, NEW.turn_result, NEW.updated_at
        WHERE NEW.turn_id IS NOT NULL;
    DELETE FROM cancel_requests WHERE NEW.turn_id IS NOT NULL
        AND session_id = NEW.session_id AND turn_id = NEW.turn_id;
    INSERT INTO events (session_id, seq, type, data, at)
        SELECT NEW.session_id, h.event_seq + key + 1, json_extract(value, '$[0]'), json_extract(value, '$[1]'), NEW.updated_at
        FROM sessions AS h, json_each(NEW.events) WHERE h.session_id = NEW.session_id;
    UPDATE sessions SET revision = NEW.revision, created_at = NEW.created_at,
        updated_at = NEW.updated_at, turns = NEW.turns, next_seq = NEW.next_seq,
        frame_start = NEW.frame_start, last_user_message = NEW.last_user_message,
        config_hash = NEW.config_hash, status = NEW.status,
        parent_id = COALESCE(NEW.parent_id, parent_id),
        event_seq = event_seq + COALESCE(json_array_length(NEW.events), 0), events_at = NEW.updated_at,
        lease_expires_at = CASE WHEN NEW.release THEN 0 ELSE lease_expires_at END,
        running_turn = CASE WHEN NEW.release THEN NULL ELSE running_turn END
        WHERE session_id = NEW.session_id;
    DELETE FROM blobs WHERE hash IN (SELECT value FROM json_each(NEW.released))
        AND NOT EXISTS (SELECT 1 FROM plugin_states AS r WHERE r.blob_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.config_hash = blobs.hash);
END;
COMMIT;

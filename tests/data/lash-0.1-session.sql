-- A session database written by lash 0.1.0 (before kernel contract v2), made with
-- configure(protocol_options={'max_tool_rounds': 3}, model='m1'), one turn with update_plan,
-- compact('keep it short') and a second turn. Load with sqlite3's executescript.
PRAGMA application_id = 1279349576;
PRAGMA user_version = 2;
PRAGMA foreign_keys=OFF;
BEGIN TRANSACTION;
CREATE TABLE lash_migrations (
    id INTEGER PRIMARY KEY NOT NULL,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL,
    lash_version TEXT NOT NULL
);
INSERT INTO lash_migrations VALUES(1,'initial schema',1796527610.9509475231,'0.1.0');
INSERT INTO lash_migrations VALUES(2,'one-statement commit',1796527610.9509475231,'0.1.0');
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
    );
INSERT INTO sessions VALUES('old-1',4,1796527610.9766752719,1796527610.9811315536,2,14,6,'And now?','ea82336c793b523efea8ffbdd502e263591040202e861a04b2743d346dedee12','95fb695875bb88e5cfe30ddb63d6b0ae1c5e67f0d682140a89a3da8c98ffb4e2',NULL,'vm:4721:3f3093c5/1',1,0.0);
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
INSERT INTO nodes VALUES('old-1',0,'6c24ab18473dff05','frame','3b36644a422d4aa7bc70541f90f22309',1,'{"id":"6c24ab18473dff05","parent_id":null,"frame_id":"3b36644a422d4aa7bc70541f90f22309","turn":1,"previous_frame_id":null,"reason":"root","summary":null,"type":"frame"}');
INSERT INTO nodes VALUES('old-1',1,'d227dd567bb3a019','user','3b36644a422d4aa7bc70541f90f22309',1,'{"id":"d227dd567bb3a019","parent_id":"6c24ab18473dff05","frame_id":"3b36644a422d4aa7bc70541f90f22309","turn":1,"text":"Plan my trip","items":[],"type":"user"}');
INSERT INTO nodes VALUES('old-1',2,'00e8a7bb2aa9ce47','assistant','3b36644a422d4aa7bc70541f90f22309',1,'{"id":"00e8a7bb2aa9ce47","parent_id":"d227dd567bb3a019","frame_id":"3b36644a422d4aa7bc70541f90f22309","turn":1,"text":"","tool_calls":[{"id":"call_1","name":"update_plan","arguments":{"steps":[{"step":"pack","status":"in_progress"}]},"invalid_arguments":null}],"usage":{"input_tokens":10,"output_tokens":3,"cached_tokens":0},"model":"scripted:m1","type":"assistant"}');
INSERT INTO nodes VALUES('old-1',3,'f488a3114044fcf7','tool_call','3b36644a422d4aa7bc70541f90f22309',1,'{"id":"f488a3114044fcf7","parent_id":"00e8a7bb2aa9ce47","frame_id":"3b36644a422d4aa7bc70541f90f22309","turn":1,"call":{"id":"call_1","name":"update_plan","arguments":{"steps":[{"step":"pack","status":"in_progress"}]},"invalid_arguments":null},"plugin":"plan","type":"tool_call"}');
INSERT INTO nodes VALUES('old-1',4,'402db45a5452f6c3','tool_result','3b36644a422d4aa7bc70541f90f22309',1,'{"id":"402db45a5452f6c3","parent_id":"f488a3114044fcf7","frame_id":"3b36644a422d4aa7bc70541f90f22309","turn":1,"call_id":"call_1","name":"update_plan","content":"plan updated:\n[~] pack","is_error":false,"projected":null,"type":"tool_result"}');
INSERT INTO nodes VALUES('old-1',5,'dd9ec37a407ec52b','assistant','3b36644a422d4aa7bc70541f90f22309',1,'{"id":"dd9ec37a407ec52b","parent_id":"402db45a5452f6c3","frame_id":"3b36644a422d4aa7bc70541f90f22309","turn":1,"text":"Packing started.","tool_calls":[],"usage":{"input_tokens":20,"output_tokens":4,"cached_tokens":0},"model":"scripted:m1","type":"assistant"}');
INSERT INTO nodes VALUES('old-1',6,'c3c44293244925db','frame','d9414e46bfe94edaab850a11374a19e6',1,'{"id":"c3c44293244925db","parent_id":"dd9ec37a407ec52b","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":1,"previous_frame_id":"3b36644a422d4aa7bc70541f90f22309","reason":"compaction","summary":"Summary: the user is packing.","type":"frame"}');
INSERT INTO nodes VALUES('old-1',7,'8ffef3fb73f529aa','user','d9414e46bfe94edaab850a11374a19e6',1,'{"id":"8ffef3fb73f529aa","parent_id":"c3c44293244925db","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":1,"text":"Plan my trip","items":[],"type":"user"}');
INSERT INTO nodes VALUES('old-1',8,'5f85d19c9bfe677d','assistant','d9414e46bfe94edaab850a11374a19e6',1,'{"id":"5f85d19c9bfe677d","parent_id":"8ffef3fb73f529aa","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":1,"text":"","tool_calls":[{"id":"call_1","name":"update_plan","arguments":{"steps":[{"step":"pack","status":"in_progress"}]},"invalid_arguments":null}],"usage":{"input_tokens":10,"output_tokens":3,"cached_tokens":0},"model":"scripted:m1","type":"assistant"}');
INSERT INTO nodes VALUES('old-1',9,'00b3064dcfdc88e4','tool_call','d9414e46bfe94edaab850a11374a19e6',1,'{"id":"00b3064dcfdc88e4","parent_id":"5f85d19c9bfe677d","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":1,"call":{"id":"call_1","name":"update_plan","arguments":{"steps":[{"step":"pack","status":"in_progress"}]},"invalid_arguments":null},"plugin":"plan","type":"tool_call"}');
INSERT INTO nodes VALUES('old-1',10,'1528afcebe3c46da','tool_result','d9414e46bfe94edaab850a11374a19e6',1,'{"id":"1528afcebe3c46da","parent_id":"00b3064dcfdc88e4","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":1,"call_id":"call_1","name":"update_plan","content":"plan updated:\n[~] pack","is_error":false,"projected":null,"type":"tool_result"}');
INSERT INTO nodes VALUES('old-1',11,'c3bb16b7b9092815','assistant','d9414e46bfe94edaab850a11374a19e6',1,'{"id":"c3bb16b7b9092815","parent_id":"1528afcebe3c46da","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":1,"text":"Packing started.","tool_calls":[],"usage":{"input_tokens":20,"output_tokens":4,"cached_tokens":0},"model":"scripted:m1","type":"assistant"}');
INSERT INTO nodes VALUES('old-1',12,'dc5a484a11f57aff','user','d9414e46bfe94edaab850a11374a19e6',2,'{"id":"dc5a484a11f57aff","parent_id":"c3bb16b7b9092815","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":2,"text":"And now?","items":[],"type":"user"}');
INSERT INTO nodes VALUES('old-1',13,'3e80e49e57b9d529','assistant','d9414e46bfe94edaab850a11374a19e6',2,'{"id":"3e80e49e57b9d529","parent_id":"dc5a484a11f57aff","frame_id":"d9414e46bfe94edaab850a11374a19e6","turn":2,"text":"Still packing.","tool_calls":[],"usage":{"input_tokens":7,"output_tokens":2,"cached_tokens":0},"model":"scripted:m1","type":"assistant"}');
CREATE TABLE blobs (
        hash TEXT PRIMARY KEY NOT NULL,
        data TEXT NOT NULL
    );
INSERT INTO blobs VALUES('0d28d6080a489c49868cdfa3af0dcdd9bcc5badae1cfd0cf00d6213236215afc','{"applied_keys":[],"commands":[],"generation":1,"members":{},"tool_plugins":{"update_plan":"plan"}}');
INSERT INTO blobs VALUES('ea82336c793b523efea8ffbdd502e263591040202e861a04b2743d346dedee12','{"model":"m1","plugin_options":{},"prompt_layers":[],"protocol_options":{"max_tool_rounds":3},"provider":"scripted"}');
INSERT INTO blobs VALUES('95fb695875bb88e5cfe30ddb63d6b0ae1c5e67f0d682140a89a3da8c98ffb4e2','{"max_tool_rounds":3}');
INSERT INTO blobs VALUES('1efb7d6797252d6deb9417fe3f92b244b9f1ef9e6e4d382699dd01bdc26b57a4','{"steps":[{"status":"in_progress","step":"pack"}],"updates":1}');
CREATE TABLE plugin_states (
        session_id TEXT NOT NULL,
        plugin TEXT NOT NULL,
        blob_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, plugin)
    ) WITHOUT ROWID;
INSERT INTO plugin_states VALUES('old-1','lash','0d28d6080a489c49868cdfa3af0dcdd9bcc5badae1cfd0cf00d6213236215afc');
INSERT INTO plugin_states VALUES('old-1','plan','1efb7d6797252d6deb9417fe3f92b244b9f1ef9e6e4d382699dd01bdc26b57a4');
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
INSERT INTO usage_ledger VALUES('old-1',2,'turn',30,7,0,1796527610.9796552658);
INSERT INTO usage_ledger VALUES('old-1',3,'compaction',5,2,0,1796527610.9805178642);
INSERT INTO usage_ledger VALUES('old-1',4,'turn',7,2,0,1796527610.9811315536);
CREATE TABLE usage_totals (
        session_id TEXT NOT NULL,
        source TEXT NOT NULL,
        input_tokens INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cached_tokens INTEGER NOT NULL,
        PRIMARY KEY (session_id, source)
    ) WITHOUT ROWID;
INSERT INTO usage_totals VALUES('old-1','compaction',5,2,0);
INSERT INTO usage_totals VALUES('old-1','turn',37,9,0);
CREATE INDEX plugin_states_by_blob ON plugin_states (blob_hash);
CREATE INDEX sessions_by_config ON sessions (config_hash);
CREATE INDEX sessions_by_protocol_options ON sessions (protocol_options_hash);
CREATE INDEX sessions_by_pending ON sessions (pending_hash);
CREATE VIEW commit_requests (session_id, expected_revision, expected_created_at, expected_updated_at, expected_turns, expected_next_seq, expected_frame_start, expected_last_user_message, expected_config_hash, expected_protocol_options_hash, expected_pending_hash, lease_owner, lease_token, revision, created_at, updated_at, turns, next_seq, frame_start, last_user_message, config_hash, protocol_options_hash, pending_hash, replace, nodes, blobs, states, usage, released)
        AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL WHERE 0;
CREATE TRIGGER apply_commit_request INSTEAD OF INSERT ON commit_requests BEGIN
    SELECT RAISE(ABORT, 'lash: the session head is not the one this commit was computed from') WHERE NOT EXISTS (
        SELECT 1 FROM sessions WHERE session_id = NEW.session_id
        AND revision IS NEW.expected_revision AND created_at IS NEW.expected_created_at AND updated_at IS NEW.expected_updated_at AND turns IS NEW.expected_turns AND next_seq IS NEW.expected_next_seq AND frame_start IS NEW.expected_frame_start AND last_user_message IS NEW.expected_last_user_message AND config_hash IS NEW.expected_config_hash AND protocol_options_hash IS NEW.expected_protocol_options_hash AND pending_hash IS NEW.expected_pending_hash 
        AND lease_owner = NEW.lease_owner AND lease_token = NEW.lease_token
        AND lease_expires_at != 0);
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
    UPDATE sessions SET revision = NEW.revision, created_at = NEW.created_at,
        updated_at = NEW.updated_at, turns = NEW.turns, next_seq = NEW.next_seq,
        frame_start = NEW.frame_start, last_user_message = NEW.last_user_message,
        config_hash = NEW.config_hash, protocol_options_hash = NEW.protocol_options_hash,
        pending_hash = NEW.pending_hash WHERE session_id = NEW.session_id;
    DELETE FROM blobs WHERE hash IN (SELECT value FROM json_each(NEW.released))
        AND NOT EXISTS (SELECT 1 FROM plugin_states AS r WHERE r.blob_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.config_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.protocol_options_hash = blobs.hash)
        AND NOT EXISTS (SELECT 1 FROM sessions AS r WHERE r.pending_hash = blobs.hash);
END;
COMMIT;

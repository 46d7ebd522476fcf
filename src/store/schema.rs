//! Schema migrations, versioned in code and applied in order on open.
//!
//! `PRAGMA user_version` holds the number of migrations applied. A file with a higher number
//! than this build knows was written by a newer Loupe and is refused.

/// Each entry upgrades the schema by one version. Never edit a released entry: append a new one.
pub const MIGRATIONS: &[&str] = &[
    // 1: the initial schema.
    r"
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
    CREATE TABLE clients (id INTEGER PRIMARY KEY, uuid TEXT NOT NULL UNIQUE) STRICT;
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('annotator', 'reviewer', 'lead')),
        created_ms INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE classes (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        color TEXT NOT NULL,
        ord INTEGER NOT NULL
    ) STRICT;
    CREATE TABLE images (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        hash TEXT UNIQUE,
        path TEXT NOT NULL UNIQUE,
        width INTEGER NOT NULL,
        height INTEGER NOT NULL,
        bytes INTEGER NOT NULL,
        missing INTEGER NOT NULL DEFAULT 0,
        external_id INTEGER,
        added_ms INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX images_external ON images(external_id);
    CREATE TABLE image_meta (
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (image, key)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX image_meta_kv ON image_meta(key, value);
    CREATE TABLE image_tags (
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        tag TEXT NOT NULL,
        PRIMARY KEY (image, tag)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX image_tags_tag ON image_tags(tag);
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        kind TEXT NOT NULL,
        model_path TEXT,
        model_hash TEXT,
        settings TEXT NOT NULL DEFAULT '{}',
        settings_hash TEXT,
        runtime_version TEXT,
        started_ms INTEGER NOT NULL,
        finished_ms INTEGER
    ) STRICT;
    CREATE TABLE run_images (
        run INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        decode_ms REAL,
        infer_ms REAL,
        boxes INTEGER NOT NULL,
        done_ms INTEGER NOT NULL,
        PRIMARY KEY (run, image)
    ) STRICT, WITHOUT ROWID;
    -- The current state of every annotation: a cache of the newest revision, rebuildable.
    CREATE TABLE annotations (
        id INTEGER PRIMARY KEY,
        uuid BLOB NOT NULL UNIQUE,
        image INTEGER NOT NULL REFERENCES images(id),
        class INTEGER NOT NULL REFERENCES classes(id),
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
        run INTEGER REFERENCES runs(id),
        score REAL,
        state TEXT NOT NULL,
        flags INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        rev INTEGER NOT NULL
    ) STRICT;
    CREATE INDEX annotations_image ON annotations(image);
    -- The append-only log: one row per change, holding the full new value.
    CREATE TABLE revisions (
        seq INTEGER PRIMARY KEY,
        ann INTEGER NOT NULL REFERENCES annotations(id),
        author INTEGER NOT NULL REFERENCES users(id),
        client INTEGER NOT NULL REFERENCES clients(id),
        hlc INTEGER NOT NULL,
        op TEXT NOT NULL,
        image INTEGER NOT NULL REFERENCES images(id),
        class INTEGER NOT NULL REFERENCES classes(id),
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL,
        run INTEGER REFERENCES runs(id),
        score REAL,
        state TEXT NOT NULL,
        flags INTEGER NOT NULL,
        deleted INTEGER NOT NULL,
        note TEXT
    ) STRICT;
    CREATE INDEX revisions_ann ON revisions(ann, seq);
    CREATE TABLE versions (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        message TEXT NOT NULL DEFAULT '',
        seq INTEGER NOT NULL,
        author INTEGER NOT NULL REFERENCES users(id),
        created_ms INTEGER NOT NULL
    ) STRICT;
    ",
    // 2: review workflow — batches, audits (owned by src/review.rs).
    r"
    -- Batches of images handed to one annotator, audited by a lead before acceptance.
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        uuid TEXT NOT NULL UNIQUE,
        name TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL CHECK (state IN ('open', 'submitted', 'auditing', 'accepted', 'returned')),
        assignee INTEGER REFERENCES users(id),
        created_by INTEGER NOT NULL REFERENCES users(id),
        created_ms INTEGER NOT NULL,
        -- How the batch was made (filter, sample size, seed), as JSON.
        recipe TEXT NOT NULL DEFAULT '{}',
        -- Submission round: 1 for the first submission, +1 after each return.
        round INTEGER NOT NULL DEFAULT 1,
        submitted_ms INTEGER,
        decided_ms INTEGER
    ) STRICT;
    CREATE TABLE batch_images (
        batch INTEGER NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        PRIMARY KEY (batch, image)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX batch_images_image ON batch_images(image);
    -- One audit per batch and round: a seeded sample stratified by annotator.
    CREATE TABLE audits (
        id INTEGER PRIMARY KEY,
        batch INTEGER NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        round INTEGER NOT NULL,
        auditor INTEGER NOT NULL REFERENCES users(id),
        percent REAL NOT NULL,
        min_images INTEGER NOT NULL,
        seed INTEGER NOT NULL,
        started_ms INTEGER NOT NULL,
        decision TEXT CHECK (decision IN ('accept', 'return')),
        decided_ms INTEGER,
        UNIQUE (batch, round)
    ) STRICT;
    CREATE TABLE audit_items (
        audit INTEGER NOT NULL REFERENCES audits(id) ON DELETE CASCADE,
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        ord INTEGER NOT NULL,
        -- The stratum: who annotated the image's boxes (NULL: nobody yet).
        annotator INTEGER REFERENCES users(id),
        verdict TEXT CHECK (verdict IN ('pass', 'fail')),
        comment TEXT,
        marked_by INTEGER REFERENCES users(id),
        marked_ms INTEGER,
        PRIMARY KEY (audit, image)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX audit_items_annotator ON audit_items(annotator);
    ",
    // 3: sync — remotes, pushed/pulled packs, conflicts (owned by src/sync/).
    r"
    -- Shared stores this project syncs with; `pushed_seq` is the highest local revision seq
    -- considered by the last push to it.
    CREATE TABLE sync_remotes (
        name TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        options TEXT NOT NULL DEFAULT '{}',
        created_ms INTEGER NOT NULL,
        last_sync_ms INTEGER,
        pushed_seq INTEGER NOT NULL DEFAULT 0
    ) STRICT;
    -- Packs written to or applied from a remote: the chain of each client's log.
    CREATE TABLE sync_packs (
        remote TEXT NOT NULL,
        client TEXT NOT NULL,
        seq INTEGER NOT NULL,
        hash TEXT NOT NULL,
        revisions INTEGER NOT NULL,
        pushed INTEGER NOT NULL,
        done_ms INTEGER NOT NULL,
        PRIMARY KEY (remote, client, seq)
    ) STRICT;
    -- What sync knows of each shared revision: the revision it replaced (its parent), the
    -- conflicting heads it resolves, where it came from, and why it was refused, if it was.
    CREATE TABLE sync_revs (
        rev INTEGER PRIMARY KEY REFERENCES revisions(seq),
        parent_client TEXT,
        parent_hlc INTEGER,
        resolves TEXT,
        pulled INTEGER NOT NULL,
        refused TEXT
    ) STRICT;
    -- Conflict resolutions written here and not pushed yet: the heads each one supersedes.
    CREATE TABLE sync_resolutions (
        rev INTEGER PRIMARY KEY REFERENCES revisions(seq),
        resolves TEXT NOT NULL
    ) STRICT;
    -- Packs and revisions refused at merge, with the reason (shown by `loupe sync status`).
    CREATE TABLE sync_refusals (
        id INTEGER PRIMARY KEY,
        remote TEXT NOT NULL,
        client TEXT NOT NULL,
        seq INTEGER NOT NULL,
        annotation TEXT NOT NULL DEFAULT '',
        hlc INTEGER NOT NULL DEFAULT 0,
        signer TEXT NOT NULL DEFAULT '',
        reason TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        UNIQUE (remote, client, seq, annotation, hlc)
    ) STRICT;
    -- Boxes edited concurrently by different clients: every head is kept until resolved.
    CREATE TABLE conflicts (
        ann INTEGER PRIMARY KEY REFERENCES annotations(id),
        heads TEXT NOT NULL,
        since_ms INTEGER NOT NULL
    ) STRICT;
    -- Per-remote facts: the pinned roster owner key and version, uploaded image hashes.
    CREATE TABLE sync_state (
        remote TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (remote, key)
    ) STRICT, WITHOUT ROWID;
    ",
    // 4: ids other tools gave the project's images and classes, the COCO `area` of imported
    // boxes, and how a run's covered images were chosen (owned by src/results.rs and the COCO
    // import in src/cli/interop.rs).
    r"
    -- Each annotation file whose ids were recorded, known by the blake3 hash of its bytes (the
    -- same file imported twice is one source; its path is kept for messages only).
    CREATE TABLE id_sources (
        id INTEGER PRIMARY KEY,
        hash TEXT NOT NULL UNIQUE,
        path TEXT NOT NULL,
        format TEXT NOT NULL,
        imported_ms INTEGER NOT NULL
    ) STRICT;
    -- A source's integer id of an image (`images.id`) or a class (`classes.id`): COCO's
    -- `image_id` and `category_id`, which results files name.
    CREATE TABLE external_ids (
        source INTEGER NOT NULL REFERENCES id_sources(id) ON DELETE CASCADE,
        kind TEXT NOT NULL CHECK (kind IN ('image', 'class')),
        ext INTEGER NOT NULL,
        target INTEGER NOT NULL,
        PRIMARY KEY (source, kind, ext)
    ) STRICT, WITHOUT ROWID;
    CREATE INDEX external_ids_target ON external_ids(kind, target);
    -- The id and `area` a COCO file gave a box (an area is a segmentation's, not w*h), with the
    -- box they were given for: evaluation uses them while the box is unchanged, as pycocotools
    -- does (area ranges by `area`; a match to annotation id 0 does not count).
    CREATE TABLE coco_boxes (
        ann INTEGER PRIMARY KEY REFERENCES annotations(id),
        coco_id INTEGER NOT NULL,
        area REAL,
        x REAL NOT NULL, y REAL NOT NULL, w REAL NOT NULL, h REAL NOT NULL
    ) STRICT;
    -- How a run's images (`run_images`) were chosen, said again wherever it is evaluated.
    ALTER TABLE runs ADD COLUMN coverage TEXT;
    -- Image ids recorded before sources were: one source standing for them all.
    INSERT INTO id_sources(hash, path, format, imported_ms)
        SELECT 'legacy:images.external_id', '', 'coco', 0
        WHERE EXISTS (SELECT 1 FROM images WHERE external_id IS NOT NULL);
    INSERT INTO external_ids(source, kind, ext, target)
        SELECT s.id, 'image', i.external_id, MIN(i.id) FROM images i, id_sources s
        WHERE i.external_id IS NOT NULL AND s.hash='legacy:images.external_id'
        GROUP BY i.external_id;
    ",
    // 5: box attributes (`model::Attributes`) as a JSON object, part of every revision; NULL for
    // a box without attributes, which is every box written before this migration.
    r"
    ALTER TABLE annotations ADD COLUMN attributes TEXT;
    ALTER TABLE revisions ADD COLUMN attributes TEXT;
    ",
    // 6: the human time each image costs, per image and annotator (`store::time`), and the
    // order a batch's review queue follows (`batches.queue_order`: 'batch' or 'uncertainty').
    r"
    CREATE TABLE image_time (
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        user INTEGER NOT NULL REFERENCES users(id),
        visits INTEGER NOT NULL,
        -- Focused on the image, idle gaps over a minute left out.
        active_ms INTEGER NOT NULL,
        actions INTEGER NOT NULL,
        key_presses INTEGER NOT NULL,
        -- The image's labels as the last visit left them: drawn by a person, or from a model.
        boxes_human INTEGER NOT NULL,
        boxes_model INTEGER NOT NULL,
        last_ms INTEGER NOT NULL,
        PRIMARY KEY (image, user)
    ) STRICT, WITHOUT ROWID;
    ALTER TABLE batches ADD COLUMN queue_order TEXT NOT NULL DEFAULT 'batch'
        CHECK (queue_order IN ('batch', 'uncertainty'));
    ",
    // 7: image and box embeddings (`store::embeddings`): one set per encoder model and
    // settings, one L2-normalised vector per image and per box crop. Derived data, local to
    // this file (never synced): `loupe embed` computes it again anywhere.
    r"
    CREATE TABLE embedding_sets (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        model_path TEXT NOT NULL,
        model_hash TEXT NOT NULL,
        settings TEXT NOT NULL,
        settings_hash TEXT NOT NULL,
        -- The vectors' length, known from the first one stored.
        dim INTEGER,
        created_ms INTEGER NOT NULL,
        UNIQUE (model_hash, settings_hash)
    ) STRICT;
    CREATE TABLE embeddings (
        set_id INTEGER NOT NULL REFERENCES embedding_sets(id) ON DELETE CASCADE,
        image INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
        -- 0: the whole image; else the box (annotations.id) whose crop it is.
        ann INTEGER NOT NULL,
        -- The box the crop was cut from: a box moved since is embedded again.
        x REAL, y REAL, w REAL, h REAL,
        -- dim little-endian f32.
        vector BLOB NOT NULL,
        PRIMARY KEY (set_id, image, ann)
    ) STRICT, WITHOUT ROWID;
    ",
    // 8: runs shared through the store (`loupe worker`): a shared run's proposals are pushed
    // (a private run's undecided proposals never are), its coverage travels in packs and
    // records which team member's worker processed each image; `sync_shared` remembers what
    // this file has put in (or read from) each remote's image list and coverage, so it is sent
    // once.
    r"
    ALTER TABLE runs ADD COLUMN shared INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE run_images ADD COLUMN worker INTEGER REFERENCES users(id);
    CREATE TABLE sync_shared (
        remote TEXT NOT NULL,
        -- 0: an image in the list (a = images.id); 1: a run's coverage (a = runs.id, b = images.id).
        kind INTEGER NOT NULL,
        a INTEGER NOT NULL,
        b INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (remote, kind, a, b)
    ) STRICT, WITHOUT ROWID;
    ",
];

/// The schema version this build writes.
pub fn latest() -> i64 {
    MIGRATIONS.len() as i64
}

"""The catalog schema as ordered migrations. ``SCHEMA_VERSION`` is the newest.

Index tables (rebuilt by ``rescan`` from a repository alone): repositories, points,
point_disks, packs, blocks, block_map. Authoritative appliance state, saved by the
configuration backup and never rebuilt from a repository: vcenters and repository_names
(version 2); jobs, sessions, session_tasks and session_log (version 4); settings (version 5);
session tasks per disk (version 6); SSH repositories' pinned host keys (version 7) and
reconnect periods (version 8); hardened repositories and their lock ledger (version 9; the
ledger is an index too: a rescan rebuilds it from the repository's immutable/ records); version
10 forgets the index of a repository that held a pack or a point twice (the next sync indexes
it again from its files; a pack and a point are recorded once since, see Catalog.add_pack),
and adds what checks found: damaged copies of blocks, and points whose manifest vanished;
version 11 names the appliance's own VM per vCenter (hot-add).
Secrets are in neither: the appliance keeps them in its secret store.
"""

from __future__ import annotations

from typing import Final

MIGRATIONS: Final[list[tuple[int, str]]] = [
    (
        1,
        """
        CREATE TABLE repositories (
            repo_id VARCHAR NOT NULL, location VARCHAR NOT NULL, key_id VARCHAR,
            synced TIMESTAMP
        );
        CREATE TABLE points (
            point_id VARCHAR NOT NULL, repo_id VARCHAR NOT NULL, object_name VARCHAR NOT NULL,
            object_kind VARCHAR NOT NULL, created TIMESTAMP NOT NULL, kind VARCHAR NOT NULL,
            parent_id VARCHAR, compression VARCHAR NOT NULL, reason VARCHAR NOT NULL,
            bytes_read BIGINT NOT NULL, bytes_stored BIGINT NOT NULL,
            manifest_bytes BIGINT NOT NULL, config JSON, complete BOOLEAN NOT NULL
        );
        CREATE TABLE point_disks (
            point_id VARCHAR NOT NULL, disk_index INTEGER NOT NULL, label VARCHAR NOT NULL,
            size BIGINT NOT NULL, block_size INTEGER NOT NULL, change_id VARCHAR,
            meta JSON, base_point VARCHAR, blocks BIGINT NOT NULL
        );
        CREATE TABLE packs (
            repo_id VARCHAR NOT NULL, pack_id VARCHAR NOT NULL, size BIGINT NOT NULL,
            entries INTEGER NOT NULL
        );
        CREATE TABLE blocks (
            repo_id VARCHAR NOT NULL, block_id BLOB NOT NULL, pack_id VARCHAR NOT NULL,
            kind UTINYINT NOT NULL, codec UTINYINT NOT NULL, key_id UINTEGER NOT NULL,
            "offset" BIGINT NOT NULL, stored_len INTEGER NOT NULL, plain_len INTEGER NOT NULL
        );
        CREATE TABLE block_map (
            point_id VARCHAR NOT NULL, disk_index INTEGER NOT NULL, block_index BIGINT NOT NULL,
            block_id BLOB
        );
        """,
    ),
    (
        2,
        """
        CREATE TABLE vcenters (
            name VARCHAR PRIMARY KEY, host VARCHAR NOT NULL, port INTEGER NOT NULL,
            "user" VARCHAR NOT NULL, fingerprint VARCHAR, insecure BOOLEAN NOT NULL,
            added TIMESTAMP NOT NULL
        );
        CREATE TABLE repository_names (
            name VARCHAR PRIMARY KEY, location VARCHAR NOT NULL, repo_id VARCHAR NOT NULL,
            added TIMESTAMP NOT NULL
        );
        """,
    ),
    (
        3,
        # Documented views for `vmkeep catalog query` (docs/CLI.md lists them).
        """
        CREATE VIEW points_per_vm AS
            SELECT p.object_name AS vm, coalesce(r.name, p.repo_id) AS repository,
                   count(*) AS points, count(*) FILTER (WHERE p.kind = 'full') AS full_points,
                   min(p.created) AS oldest, max(p.created) AS newest
            FROM points p LEFT JOIN repository_names r USING (repo_id)
            GROUP BY ALL;
        CREATE VIEW changed_bytes_per_run AS
            SELECT p.point_id, p.object_name AS vm, p.created, p.kind,
                   p.bytes_read, p.bytes_stored, p.reason
            FROM points p;
        CREATE VIEW stored_bytes_per_vm AS
            SELECT p.object_name AS vm, coalesce(r.name, p.repo_id) AS repository,
                   sum(p.bytes_read) AS bytes_read, sum(p.bytes_stored) AS bytes_stored,
                   CASE WHEN sum(p.bytes_stored) > 0
                        THEN round(sum(p.bytes_read) / sum(p.bytes_stored), 2) END AS dedup_ratio
            FROM points p LEFT JOIN repository_names r USING (repo_id)
            GROUP BY ALL;
        CREATE VIEW space_per_repository AS
            SELECT coalesce(r.name, k.repo_id) AS repository, k.location,
                   (SELECT count(*) FROM packs p WHERE p.repo_id = k.repo_id) AS packs,
                   (SELECT coalesce(sum(size), 0) FROM packs p
                    WHERE p.repo_id = k.repo_id) AS pack_bytes,
                   (SELECT count(*) FROM points p WHERE p.repo_id = k.repo_id) AS points
            FROM repositories k LEFT JOIN repository_names r USING (repo_id);
        """,
    ),
    (
        4,
        """
        CREATE TABLE jobs (
            name VARCHAR PRIMARY KEY, spec JSON NOT NULL, enabled BOOLEAN NOT NULL,
            created TIMESTAMP NOT NULL
        );
        CREATE TABLE sessions (
            id VARCHAR PRIMARY KEY, job VARCHAR NOT NULL, kind VARCHAR NOT NULL,
            state VARCHAR NOT NULL, result VARCHAR, started TIMESTAMP NOT NULL,
            ended TIMESTAMP, detail JSON
        );
        CREATE TABLE session_tasks (
            session_id VARCHAR NOT NULL, task VARCHAR NOT NULL, state VARCHAR NOT NULL,
            result VARCHAR, bytes_done BIGINT NOT NULL, bytes_total BIGINT NOT NULL,
            stage VARCHAR, point_id VARCHAR, updated TIMESTAMP NOT NULL
        );
        CREATE TABLE session_log (
            session_id VARCHAR NOT NULL, seq INTEGER NOT NULL, "time" TIMESTAMP NOT NULL,
            level VARCHAR NOT NULL, message VARCHAR NOT NULL
        );
        """,
    ),
    (
        5,
        """
        CREATE TABLE settings (name VARCHAR PRIMARY KEY, value JSON NOT NULL);
        """,
    ),
    (
        6,
        """
        ALTER TABLE session_tasks ADD COLUMN vm VARCHAR;
        ALTER TABLE session_tasks ADD COLUMN disk INTEGER;
        """,
    ),
    (
        7,
        """
        ALTER TABLE repository_names ADD COLUMN host_key_fingerprint VARCHAR;
        """,
    ),
    (
        8,
        """
        ALTER TABLE repository_names ADD COLUMN reconnect_every DOUBLE;
        ALTER TABLE repository_names ADD COLUMN reconnect_for DOUBLE;
        """,
    ),
    (
        9,
        """
        ALTER TABLE repository_names ADD COLUMN immutable_days INTEGER;
        ALTER TABLE repository_names ADD COLUMN epoch_days INTEGER;
        CREATE TABLE immutable_ledger (
            repo_id VARCHAR NOT NULL, name VARCHAR NOT NULL, until TIMESTAMP NOT NULL
        );
        """,
    ),
]

MIGRATIONS.append((
    10,
    """
    CREATE TEMP TABLE dup_repos AS
        SELECT repo_id FROM packs GROUP BY repo_id, pack_id HAVING count(*) > 1
        UNION SELECT repo_id FROM points GROUP BY repo_id, point_id HAVING count(*) > 1
        UNION SELECT repo_id FROM blocks GROUP BY repo_id, pack_id, "offset"
              HAVING count(*) > 1;
    DELETE FROM block_map WHERE point_id IN
        (SELECT point_id FROM points WHERE repo_id IN (SELECT repo_id FROM dup_repos));
    DELETE FROM point_disks WHERE point_id IN
        (SELECT point_id FROM points WHERE repo_id IN (SELECT repo_id FROM dup_repos));
    DELETE FROM points WHERE repo_id IN (SELECT repo_id FROM dup_repos);
    DELETE FROM blocks WHERE repo_id IN (SELECT repo_id FROM dup_repos);
    DELETE FROM packs WHERE repo_id IN (SELECT repo_id FROM dup_repos);
    UPDATE repositories SET synced = NULL WHERE repo_id IN (SELECT repo_id FROM dup_repos);
    DROP TABLE dup_repos;
    CREATE TABLE damaged_blocks (
        repo_id VARCHAR NOT NULL, pack_id VARCHAR NOT NULL, block_id BLOB NOT NULL,
        problem VARCHAR NOT NULL, noticed TIMESTAMP NOT NULL
    );
    CREATE TABLE vanished_points (
        repo_id VARCHAR NOT NULL, point_id VARCHAR NOT NULL, object_name VARCHAR NOT NULL,
        created TIMESTAMP NOT NULL, noticed TIMESTAMP NOT NULL
    );
    """,
))

# 11: the appliance's own VM in each vCenter (hot-add), "" when found by its BIOS UUID.
MIGRATIONS.append((11, "ALTER TABLE vcenters ADD COLUMN appliance_vm VARCHAR;"))

SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

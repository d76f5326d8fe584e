"""The catalog schema as ordered migrations. ``SCHEMA_VERSION`` is the newest.

Index tables (rebuilt by ``rescan`` from a repository alone): repositories, points,
point_disks, packs, blocks, block_map. Authoritative appliance state, saved by the
configuration backup and never rebuilt from a repository: vcenters and repository_names
(version 2); jobs, schedules and sessions join later. Secrets are in neither: the appliance
keeps them in its secret store.
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
]

SCHEMA_VERSION: Final = MIGRATIONS[-1][0]

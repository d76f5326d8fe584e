"""The CLI's grammar (docs/CLI.md, Grammar): `--repo` is a NAME through the appliance and a
DIR or URL for `image` / `vsphere`, and a value that fits the other kind gets a message that
says which was expected and which command takes the other."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import run_inproc


def test_a_folder_given_where_a_repository_name_is_expected(tmp_path: Path) -> None:
    for command in (["verify"], ["prune", "--keep-last", "1"],
                    ["config", "backup", "--password-stdin"]):
        r = run_inproc([*command, "--repo", "/backups/main"], tmp_path / "cache")
        assert r.code == 2, r
        assert "--repo takes a repository's NAME here" in r.err, r.err
        assert "`vmkeep image … --repo DIR`" in r.err
    r = run_inproc(["move", "--job", "nightly", "--to", "/backups/offsite"], tmp_path / "cache")
    assert r.code == 2 and "--repo takes a repository's NAME here" in r.err, r.err


def test_a_name_given_where_a_repository_folder_is_expected(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for command in (["image", "verify"], ["image", "points"],
                    ["image", "prune", "--keep-last", "1"]):
        r = run_inproc([*command, "--repo", "main"], tmp_path / "cache")
        assert r.code == 3, r
        assert "repository folder main does not exist" in r.err
        assert "--repo here takes a folder (DIR) or an sftp:// URL, not a name" in r.err, r.err
        assert "`vmkeep verify --repo main`" in r.err
    # A path that is plainly a folder is only said not to exist.
    r = run_inproc(["image", "verify", "--repo", str(tmp_path / "gone")], tmp_path / "cache")
    assert r.code == 3 and "not a name" not in r.err, r.err

"""The local Flink gateway's lib/ folder: PyFlink's jars and the Kafka connector, linked into the cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streaming.engines import flink


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TIDESCALE_CACHE", str(tmp_path))
    return tmp_path


def a_connector(cache: Path) -> Path:
    jar = cache / "jars" / "flink" / flink.CONNECTOR
    jar.parent.mkdir(parents=True)
    jar.write_bytes(b"PK")
    return jar


def test_the_lib_folder_links_pyflinks_jars_and_the_connector_and_is_made_once(cache: Path) -> None:
    connector = a_connector(cache)

    folder = flink.local_lib_directory()

    assert folder is not None and folder.parent == cache / "flink-lib"
    bundled = sorted((flink._pyflink_home() / "lib").glob("*.jar"))
    assert bundled, "PyFlink ships its jars in lib/"
    assert {p.name: p.resolve() for p in folder.iterdir()} == {
        **{j.name: j.resolve() for j in bundled},
        connector.name: connector.resolve(),
    }
    assert flink.local_lib_directory() == folder
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left behind


def test_another_connector_gets_a_folder_of_its_own(
    cache: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    fetched = a_connector(cache)
    first = flink.local_lib_directory()
    other = tmp_path_factory.mktemp("other") / flink.CONNECTOR
    other.write_bytes(b"PK")
    fetched.unlink()
    fetched.symlink_to(other)

    second = flink.local_lib_directory()

    assert first is not None and second is not None and first != second
    assert (second / flink.CONNECTOR).resolve() == other.resolve()
    # The first folder is left as it was: its link still names the jar first fetched.
    assert Path(os.readlink(first / flink.CONNECTOR)) == fetched.parent.resolve() / fetched.name


def test_without_the_connector_there_is_no_lib_folder(cache: Path) -> None:
    assert flink.local_lib_directory() is None
    assert not (cache / "flink-lib").exists()

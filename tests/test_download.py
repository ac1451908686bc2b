"""Downloads through pooch from a real HTTP server on the loopback: checksum, cache, mirror."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import io
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from autorec import DatasetUnavailableError, load_dataset
from autorec.data import DATASETS

U_DATA = "196\t242\t3\t881250949\n186\t302\t3\t891717742\n22\t377\t1\t878887116\n"


def zip_bytes(members: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in members.items():
            archive.writestr(name, text)
    return buffer.getvalue()


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, list[str]]]:
    """A real HTTP server on 127.0.0.1 serving ``tmp_path/www``, set as the download mirror.

    Yields the served folder and the list of paths requested so far.
    """
    www = tmp_path / "www"
    www.mkdir()
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            requests.append(self.path)

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(www)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AUTOREC_DATASETS_URL", f"http://127.0.0.1:{server.server_port}/mirror/")
    (tmp_path / "no-local-copy").mkdir()
    monkeypatch.setenv("AUTOREC_DATA_DIR", str(tmp_path / "no-local-copy"))
    monkeypatch.setenv("AUTOREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    monkeypatch.delenv("http_proxy", raising=False)
    (www / "mirror").mkdir()
    try:
        yield www / "mirror", requests
    finally:
        server.shutdown()
        server.server_close()


def test_download_checks_sha256_extracts_and_reuses_cache(mirror, monkeypatch, tmp_path):
    served, requests = mirror
    payload = zip_bytes({"ml-100k/u.data": U_DATA})
    (served / "ml-100k.zip").write_bytes(payload)
    spec = dataclasses.replace(DATASETS["ml-100k"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(DATASETS, "ml-100k", spec)

    ratings = load_dataset("ml-100k")
    assert len(ratings) == 3 and list(ratings.user_ids) == [196, 186, 22]
    assert requests == ["/mirror/ml-100k.zip"]
    assert (tmp_path / "cache" / "ml-100k" / "u.data").is_file()

    (served / "ml-100k.zip").unlink()  # the mirror goes away: the cache still serves
    assert len(load_dataset("ml-100k", download=None)) == 3
    assert requests == ["/mirror/ml-100k.zip"]


def test_an_unpack_cut_short_leaves_no_data_set_behind(mirror, monkeypatch, tmp_path):
    """The archive was unpacked straight into the cache: a Ctrl-C or a kill halfway left a
    truncated ratings file that every later run took for the data set, without a word."""
    served, _ = mirror
    payload = zip_bytes({"ml-100k/u.data": U_DATA})
    (served / "ml-100k.zip").write_bytes(payload)
    spec = dataclasses.replace(DATASETS["ml-100k"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    extract = zipfile.ZipFile.extractall

    def cut_short(self, path=None, *args, **kwargs):
        Path(path, "ml-100k").mkdir(parents=True)
        Path(path, "ml-100k", "u.data").write_text(U_DATA[:30])  # half a file, then Ctrl-C
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(zipfile.ZipFile, "extractall", cut_short)
        with pytest.raises(KeyboardInterrupt):
            load_dataset("ml-100k")
    cache = tmp_path / "cache"
    assert not (cache / "ml-100k").exists()
    with pytest.raises(DatasetUnavailableError):
        load_dataset("ml-100k", download=False)  # nothing there, not a truncated data set
    assert zipfile.ZipFile.extractall is extract
    assert len(load_dataset("ml-100k")) == 3  # the next run downloads and unpacks it whole
    assert sorted(p.name for p in cache.iterdir()) == [".autorec-download.lock", "ml-100k",
                                                       "ml-100k.zip"]


def test_checksum_mismatch_is_refused_and_not_kept(mirror, tmp_path):
    served, requests = mirror
    (served / "ml-100k.zip").write_bytes(zip_bytes({"ml-100k/u.data": U_DATA}))
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("ml-100k")  # the real GroupLens checksum cannot match this archive
    message = str(info.value)
    assert "SHA-256" in message and "--data-dir" in message and "\n" not in message
    assert requests == ["/mirror/ml-100k.zip"]
    assert not (tmp_path / "cache" / "ml-100k").exists()
    assert not (tmp_path / "cache" / "ml-100k.zip").exists()


def test_missing_on_server_says_how_to_supply(mirror):
    with pytest.raises(DatasetUnavailableError, match="AUTOREC_DATA_DIR") as caught:
        load_dataset("ml-1m")
    # the server answered (404): not "offline?", which it said for every failure
    assert "HTTPError" in str(caught.value) and "offline?" not in str(caught.value)
    assert "404" in str(caught.value)


def test_a_cache_that_is_a_file_is_not_called_offline(mirror, monkeypatch, tmp_path):
    cache = tmp_path / "a-file"
    cache.write_text("")
    monkeypatch.setenv("AUTOREC_CACHE_DIR", str(cache))
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("ml-1m")
    assert "offline?" not in str(caught.value)


def test_download_false_never_asks_the_server(mirror):
    _, requests = mirror
    with pytest.raises(DatasetUnavailableError, match="downloads are disabled"):
        load_dataset("ml-100k", download=False)
    assert requests == []


@pytest.mark.parametrize("base", ["file:///tmp/mirror/", "mirror-folder/"])
def test_a_mirror_pooch_cannot_fetch_is_named_so(monkeypatch, tmp_path, base):
    """A file:// mirror or a bare path was reported as a checksum mismatch, though nothing
    was fetched."""
    monkeypatch.setenv("AUTOREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("AUTOREC_DATASETS_URL", base)
    monkeypatch.delenv("AUTOREC_DATA_DIR", raising=False)
    with pytest.raises(DatasetUnavailableError) as info:
        load_dataset("ml-1m", data_dir=tmp_path)
    message = str(info.value)
    assert "cannot be downloaded: pooch fetches http, https" in message, message
    assert "SHA-256" not in message and "\n" not in message


def test_a_forced_download_that_fails_names_the_local_copy(mirror, tmp_path):
    """With a local copy and download=True (--download), a failed download said to 'give a
    local copy with --data-dir DIR', though DIR held one."""
    local = tmp_path / "here"
    (local / "ml-100k").mkdir(parents=True)
    (local / "ml-100k" / "u.data").write_text(U_DATA)
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("ml-100k", local, download=True)
    message = str(caught.value)
    assert f"A local copy is in {local / 'ml-100k'}" in message
    assert "Give a local copy" not in message
    assert len(load_dataset("ml-100k", local)) == 3  # without the forced download, it is used


def test_processes_using_a_data_set_first_at_once_wait_for_one_unpack(mirror, monkeypatch,
                                                                       tmp_path):
    """Each unpack removed every other unpacking folder in the cache: two processes at their
    first use (train --nproc 2) took each other's folder away, and a partial copy could stay.
    One fetches and unpacks under the cache's lock; the others find it there."""
    served, requests = mirror
    members = {f"ml-100k/u{k}.base": U_DATA for k in range(1, 6)}
    payload = zip_bytes({"ml-100k/u.data": U_DATA, **members})
    (served / "ml-100k.zip").write_bytes(payload)
    spec = dataclasses.replace(DATASETS["ml-100k"], sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(DATASETS, "ml-100k", spec)
    extract = zipfile.ZipFile.extractall

    def slow(self, *args, **kwargs):  # a large archive: the others arrive meanwhile
        extract(self, *args, **kwargs)
        time.sleep(0.3)

    monkeypatch.setattr(zipfile.ZipFile, "extractall", slow)
    results: list[object] = []

    def use() -> None:
        try:
            results.append(len(load_dataset("ml-100k")))
        except Exception as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=use) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [3, 3, 3]
    folder = tmp_path / "cache" / "ml-100k"
    assert sorted(p.name for p in folder.iterdir()) == ["u.data", *sorted(
        name.split("/")[1] for name in members)]
    assert requests == ["/mirror/ml-100k.zip"]


@pytest.mark.parametrize(("base", "needle"), [
    ("http://host name/", "is not a valid address"),
    ("http://", "from http://ml-100k.zip failed"),  # the scheme's slashes kept (http:/ml-...)
])
def test_a_malformed_mirror_address_is_named_not_a_checksum(monkeypatch, tmp_path, base, needle):
    monkeypatch.setenv("AUTOREC_DATASETS_URL", base)
    monkeypatch.setenv("AUTOREC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("AUTOREC_DATA_DIR", raising=False)
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("ml-100k")
    assert needle in str(caught.value) and "checksum" not in str(caught.value)


def test_a_local_error_while_downloading_is_not_called_offline(mirror, monkeypatch, tmp_path):
    import errno

    import pooch

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pooch, "retrieve", full)
    with pytest.raises(DatasetUnavailableError) as caught:
        load_dataset("ml-100k")
    message = str(caught.value)
    assert "No space left on device" in message and "offline" not in message
    assert f"cache {tmp_path / 'cache'}" in message

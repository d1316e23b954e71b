"""Model folders and zips read in memory: only the named files are read, and a hostile zip is refused
before anything in it is unpacked."""
from __future__ import annotations

import io
import stat
import zipfile
import zlib

import pytest

from vae_core import archive
from vae_core.archive import read_folder, read_zip
from vae_core.checkpoint import CheckpointError

WANTED = {"model.json", "encoder.onnx"}


def _zip(entries: dict[str, bytes], compression=zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as handle:
        for name, data in entries.items():
            handle.writestr(name, data)
    return buffer.getvalue()


@pytest.mark.parametrize("prefix", ["", "exported/", "exported/./"])
def test_reads_only_the_wanted_files_at_the_top_or_in_one_folder(prefix):
    bundle = read_zip(_zip({f"{prefix}model.json": b"{}", f"{prefix}encoder.onnx": b"graph",
                            f"{prefix}encoder.pkl": b"never read"}), "m.zip", WANTED)
    assert bundle.files == {"model.json": b"{}", "encoder.onnx": b"graph"}
    assert bundle.names == {"model.json", "encoder.onnx", "encoder.pkl"}, "an unread file is still seen"


def test_a_folder_reads_the_same_way(tmp_path):
    (tmp_path / "model.json").write_bytes(b"{}")
    (tmp_path / "decoder.pkl").write_bytes(b"never read")
    (tmp_path / "sub").mkdir()
    bundle = read_folder(tmp_path, WANTED)
    assert bundle.files == {"model.json": b"{}"} and bundle.names == {"model.json", "decoder.pkl"}
    with pytest.raises(CheckpointError, match="no such folder"):
        read_folder(tmp_path / "nowhere", WANTED)


@pytest.mark.parametrize("name", ["../model.json", "a/../../model.json", "/etc/model.json", "C:/model.json",
                                  "..\\model.json"])
def test_paths_outside_the_zip_are_refused(name):
    with pytest.raises(CheckpointError, match="points outside the zip"):
        read_zip(_zip({name: b"{}"}), "evil.zip", WANTED)


def test_a_symbolic_link_is_refused():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as handle:
        info = zipfile.ZipInfo("model.json")
        info.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(info, "/etc/passwd")
    with pytest.raises(CheckpointError, match="symbolic link"):
        read_zip(buffer.getvalue(), "link.zip", WANTED)


def test_a_zip_bomb_is_refused_before_it_is_unpacked():
    bomb = _zip({"model.json": b"\0" * (20 * 1024**2)})  # 20 MB of zeros pack into about 20 kB
    assert len(bomb) < 100_000
    with pytest.raises(CheckpointError, match="zip bomb"):
        read_zip(bomb, "bomb.zip", WANTED)


def test_limits_on_size_and_count(monkeypatch):
    monkeypatch.setattr(archive, "MAX_MEMBER_BYTES", 1000)
    with pytest.raises(CheckpointError, match="larger than this app loads"):
        read_zip(_zip({"model.json": bytes(range(256)) * 8}, zipfile.ZIP_STORED), "big.zip", WANTED)
    with pytest.raises(CheckpointError, match="more than a model folder holds"):
        read_zip(_zip({f"f{i}.txt": b"" for i in range(archive.MAX_MEMBERS + 1)}), "many.zip", WANTED)


def test_files_scattered_over_folders_or_damaged_zips_are_refused():
    with pytest.raises(CheckpointError, match="sit together"):
        read_zip(_zip({"a/model.json": b"{}", "b/encoder.onnx": b"g"}), "two.zip", WANTED)
    with pytest.raises(CheckpointError, match="not a readable zip"):
        read_zip(b"PK\x03\x04 not really", "junk.zip", WANTED)
    damaged = bytearray(_zip({"model.json": b"{" + b"x" * 5000 + b"}"}))
    damaged[60:70] = b"\xff" * 10  # inside the packed data: the CRC check catches it
    with pytest.raises(CheckpointError, match="damaged|not a readable zip"):
        read_zip(bytes(damaged), "bad.zip", WANTED)


def test_a_header_that_lies_about_the_size_cannot_inflate_the_rest():
    """A bomb whose header claims 1,000 bytes (with the CRC of those 1,000): the checks on declared
    sizes pass it, so the reading itself must stop there rather than inflate 50 MB first."""
    import struct
    import tracemalloc

    payload = b"\0" * (50 * 1024**2)
    data = bytearray(_zip({"model.json": payload}))
    crc = zlib.crc32(payload[:1000])
    local, central = 0, data.index(b"PK\x01\x02")
    struct.pack_into("<I", data, local + 14, crc)
    struct.pack_into("<I", data, local + 22, 1000)
    struct.pack_into("<I", data, central + 16, crc)
    struct.pack_into("<I", data, central + 24, 1000)
    tracemalloc.start()
    bundle = read_zip(bytes(data), "liar.zip", WANTED)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert bundle.files["model.json"] == b"\0" * 1000
    assert peak < 8 * 1024**2, f"{peak / 1e6:.0f} MB allocated to read 1,000 bytes"


def test_what_a_mac_adds_to_a_zip_is_ignored():
    bundle = read_zip(_zip({"m/model.json": b"{}", "__MACOSX/m/._model.json": b"fork", "m/.DS_Store": b"x"}),
                      "mac.zip", WANTED)
    assert bundle.files == {"model.json": b"{}"} and bundle.names == {"model.json"}

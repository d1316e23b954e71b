"""Model folders and zips of them, read as a few named files in memory: nothing is extracted to disk,
nothing is unpickled, and a member is read only when the caller asks for it by name.

A pythae folder (model_config.json, model.pt, environment.json) and an ONNX pair (encoder.onnx,
decoder.onnx, model.json) arrive either as a folder on disk or as a zip uploaded in the browser.
A zip may hold the files at its top or inside one folder (what "compress this folder" makes).
"""
from __future__ import annotations

import io
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from .checkpoint import CheckpointError

MAX_MEMBERS = 64  # a model folder holds a handful of files
MAX_MEMBER_BYTES = 512 * 1024**2  # per file, after decompression
MAX_TOTAL_BYTES = 1024**3  # all the files read, together
MAX_COMPRESSION_RATIO = 200  # weights compress about 1.1x; a bomb compresses 1000x and more
_CHUNK = 1024**2
# What "Compress" on a Mac adds beside the files: resource forks and Finder's folder settings.
_PLATFORM_EXTRAS = ("__MACOSX/", ".DS_Store")


@dataclass
class Bundle:
    """The files of one model folder: `files` holds the members read (by base name); `names` every
    member's base name, read or not (so a caller can refuse a folder for a file it never opens)."""
    name: str
    files: dict[str, bytes] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)


def read_folder(path: str | Path, wanted: set[str]) -> Bundle:
    """The `wanted` files of a folder (those present), and the names of all its files."""
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder.name}: no such folder")
    entries = [p for p in folder.iterdir() if p.is_file()]
    if len(entries) > MAX_MEMBERS:
        raise CheckpointError(f"{folder.name}: {len(entries)} files is more than a model folder holds")
    bundle = Bundle(folder.name, names={p.name for p in entries})
    total = 0
    for entry in entries:
        if entry.name in wanted:
            size = entry.stat().st_size
            total += size
            if size > MAX_MEMBER_BYTES:
                raise CheckpointError(f"{folder.name}/{entry.name}: {size / 1e6:.0f} MB is larger than this app loads")
            if total > MAX_TOTAL_BYTES:
                raise CheckpointError(f"{folder.name}: its model files add up to more than this app loads")
            bundle.files[entry.name] = entry.read_bytes()
    return bundle


def read_zip(data: bytes, name: str, wanted: set[str]) -> Bundle:
    """The `wanted` members of a zip, after checking every entry: no absolute or `..` paths, no
    links, a bounded number and size of files, and no compression ratio that only a bomb has."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = archive.infolist()
    except (zipfile.BadZipFile, EOFError, ValueError) as exc:
        raise CheckpointError(f"{name}: not a readable zip file ({exc})") from None
    if len(infos) > MAX_MEMBERS:
        raise CheckpointError(f"{name}: {len(infos)} entries is more than a model folder holds")
    members: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or ":" in info.filename:
            raise CheckpointError(f"{name}: refused: the entry {info.filename!r} points outside the zip")
        if (info.external_attr >> 16) & 0o170000 == 0o120000:
            raise CheckpointError(f"{name}: refused: the entry {info.filename!r} is a symbolic link")
        if info.is_dir() or info.filename.startswith(_PLATFORM_EXTRAS) or path.name.startswith("._") \
                or path.name == ".DS_Store":
            continue
        if info.file_size > MAX_MEMBER_BYTES:
            raise CheckpointError(f"{name}: {info.filename} unpacks to {info.file_size / 1e6:.0f} MB, "
                                  "larger than this app loads")
        if info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1) and info.file_size > 1024**2:
            raise CheckpointError(f"{name}: refused: {info.filename} unpacks {info.file_size // max(info.compress_size, 1)}"
                                  " times larger than it is packed (a zip bomb?)")
        members[str(path)] = info
    folders = {PurePosixPath(p).parent for p in members}
    if len(folders) > 1:
        raise CheckpointError(f"{name}: the model's files must sit together, at the top of the zip or in one folder")
    if sum(info.file_size for base, info in members.items() if PurePosixPath(base).name in wanted) > MAX_TOTAL_BYTES:
        raise CheckpointError(f"{name}: the files unpack to more than this app loads")
    bundle = Bundle(name, names={PurePosixPath(p).name for p in members})
    for path, info in members.items():
        base = PurePosixPath(path).name
        if base in wanted:
            bundle.files[base] = _read_member(archive, info, name)
    return bundle


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, name: str) -> bytes:
    """A member's bytes, inflated a chunk at a time: zipfile stops at the size the header declares
    and checks the CRC, so a header that lies about the size cannot make the server inflate more
    (archive.read() would decompress the whole stream first and cut it afterwards)."""
    chunks = []
    try:
        with archive.open(info) as stream:
            while chunk := stream.read(_CHUNK):
                chunks.append(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError, zlib.error) as exc:
        raise CheckpointError(f"{name}: {PurePosixPath(info.filename).name} is damaged in the zip ({exc})") from None
    return b"".join(chunks)

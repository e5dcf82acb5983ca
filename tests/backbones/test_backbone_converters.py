"""Split-zip reading and extraction (the mpnet recipe) on tiny fake archives."""

from __future__ import annotations

import io
import random
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from personakit.backbones import embedded as embedded_mod
from personakit.backbones import embedded_path, embedded_status
from personakit.backbones.cache import read_marker
from personakit.backbones.converters import ConcatReader, unzip_split

WEIGHTS = random.Random(0).randbytes(8000)  # incompressible, so the zip spans every part

FILES = {
    "config.json": b'{"model_type": "mpnet"}',
    "modules.json": b"[]",
    "1_Pooling/config.json": b'{"pooling_mode_mean_tokens": true}',
    "model.safetensors": WEIGHTS,
}


def _split_zip(tmp_path: Path, files: dict[str, bytes], sizes=(1000, 3000), top="tiny-mpnet/",
               compression=zipfile.ZIP_DEFLATED) -> list[Path]:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        zf.writestr(top, b"")
        for name, data in files.items():
            zf.writestr(top + name, data)
        zf.writestr(top + "desktop.ini", b"[.ShellClassInfo]")
        zf.writestr(top + "1_Pooling/desktop.ini", b"[.ShellClassInfo]")
    data = buf.getvalue()
    cuts = [0, *sizes, len(data)]
    assert cuts[-2] < len(data)
    parts = []
    for i, (a, b) in enumerate(zip(cuts, cuts[1:]), start=1):
        part = tmp_path / f"tiny.zip.{i:03d}"
        part.write_bytes(data[a:b])
        parts.append(part)
    return parts


@settings(max_examples=60, deadline=None)
@given(
    chunks=st.lists(st.binary(max_size=40), min_size=1, max_size=5),
    ops=st.lists(st.tuples(st.integers(0, 220), st.integers(-1, 50)), max_size=8),
)
def test_concat_reader_matches_concatenated_bytes(tmp_path_factory, chunks, ops):
    folder = tmp_path_factory.mktemp("parts")
    paths = []
    for i, chunk in enumerate(chunks):
        paths.append(folder / f"p{i}")
        paths[-1].write_bytes(chunk)
    whole = b"".join(chunks)
    with ConcatReader(paths) as fh:
        assert fh.read() == whole
        assert fh.seek(0, io.SEEK_END) == len(whole)
        for pos, n in ops:
            fh.seek(pos)
            assert fh.read(n) == (whole[pos:] if n < 0 else whole[pos:pos + n])
            assert fh.tell() == (max(pos, len(whole)) if n < 0 else pos + len(whole[pos:pos + n]))


def test_unzip_split_strips_top_folder_and_junk(tmp_path):
    parts = _split_zip(tmp_path, FILES)
    out = tmp_path / "out"
    out.mkdir()
    unzip_split(parts, out, progress=False, required=("config.json", "modules.json"))
    extracted = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert extracted == FILES


def test_parts_out_of_order_are_rejected(tmp_path):
    parts = _split_zip(tmp_path, FILES)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="tiny.zip.002"):
        unzip_split([parts[1], parts[0], parts[2]], out, progress=False)


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_corrupted_part_is_rejected(tmp_path, compression):
    parts = _split_zip(tmp_path, {"config.json": b"{}", "model.safetensors": WEIGHTS},
                       sizes=(2000, 6000), compression=compression)
    data = bytearray(parts[1].read_bytes())
    data[500] ^= 0xFF  # inside the weights' data
    parts[1].write_bytes(bytes(data))
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="not a valid split zip"):
        unzip_split(parts, out, progress=False)


def test_missing_required_file_is_reported(tmp_path):
    parts = _split_zip(tmp_path, {"config.json": b"{}", "model.safetensors": WEIGHTS})
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="modules.json"):
        unzip_split(parts, out, progress=False, required=("config.json", "modules.json"))


def test_unsafe_member_path_is_rejected(tmp_path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("model/config.json", b"{}")
        zf.writestr("model/../../evil.txt", b"x")
    part = tmp_path / "evil.zip.001"
    part.write_bytes(buf.getvalue())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ValueError, match="unsafe path"):
        unzip_split([part], out, progress=False)
    assert not (tmp_path / "evil.txt").exists()


def test_mpnet_recipe_end_to_end_on_fake_parts(tmp_path, tmp_cache, monkeypatch):
    parts = _split_zip(tmp_path, FILES)
    monkeypatch.setattr(embedded_mod, "locate_sources", lambda model: parts)
    path = embedded_path("mpnet", progress=False)
    assert path == tmp_cache / "embedded" / "all-mpnet-base-v2"
    assert (path / "1_Pooling" / "config.json").read_bytes() == FILES["1_Pooling/config.json"]
    assert not list(path.rglob("desktop.ini"))
    assert [s["name"] for s in read_marker(path)["sources"]] == [p.name for p in parts]
    assert embedded_status("mpnet").prepared

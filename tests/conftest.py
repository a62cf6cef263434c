"""Shared fixtures: real images from installed packages, small enough to keep tests fast."""

from __future__ import annotations

import importlib.util
import io
import sys
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from dedupkit.decode import flatten_alpha
from dedupkit.samples import OPENCLIPART, encode, load_rgb, real_images


REPOSITORY = Path(__file__).resolve().parents[1]


def load_module(relative_path: str):
    """A repository script (benchmarks/..., scripts/...) imported as a module, registered in
    sys.modules first: its dataclasses look their module up while being defined."""
    path = REPOSITORY / relative_path
    name = path.stem + "_under_test"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def small_drawing(name: str, side: int = 96) -> Image.Image:
    """An openclipart drawing (`name` under its png folder) flattened on white, at most `side` px;
    skips the test when openclipart-png is not installed."""
    path = OPENCLIPART / name
    if not path.exists():
        pytest.skip("openclipart-png is not installed")
    drawing = flatten_alpha(Image.open(path).convert("RGBA")).convert("RGB")
    drawing.thumbnail((side, side), Image.Resampling.LANCZOS)
    return drawing


def thumbnails(count: int, max_side: int = 96) -> list[Image.Image]:
    """`count` distinct real pictures as small RGB images (photos first, then drawings)."""
    images = []
    for path in real_images(count):
        image = load_rgb(path)
        image.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        images.append(image)
    return images


@pytest.fixture(scope="session")
def real_thumbnails() -> list[Image.Image]:
    return thumbnails(40)


@pytest.fixture(scope="session")
def real_photo() -> Image.Image:
    """A real photo, 256x192: not square, so a lost rotation shows in its size."""
    image = load_rgb(real_images(1)[0])
    image.thumbnail((256, 256))
    return image.crop((0, 0, 256, 192))


def write_folder(root: Path, files: dict[str, bytes]) -> Path:
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def write_tar(path: Path, members: list[tuple[str, bytes]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return path


def write_parquet(path: Path, rows: list[dict], struct_images: bool = True, row_group_size: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())]) if struct_images else pa.binary()
    table = pa.table(
        {
            "key": [r["key"] for r in rows],
            "image": pa.array(
                [({"bytes": r["bytes"], "path": r["key"] + ".png"} if struct_images else r["bytes"]) for r in rows],
                image_type,
            ),
            "caption": [r.get("caption") for r in rows],
            "url": [r.get("url") for r in rows],
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


def png(image: Image.Image) -> bytes:
    return encode(image, "PNG")


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    return encode(image, "JPEG", quality=quality)

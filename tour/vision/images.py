"""The vision stop's photos in: built-in names (scikit-image and scikit-learn's
photos, from the core), your own image files and folders of them, each read upright as RGB before anything runs,
so a bad file is a one-line error with nothing written. Imports no torch (the stop's import must stay light).
"""

from __future__ import annotations

from pathlib import Path

from tour.core.data import SKIMAGE_PHOTOS, SKLEARN_PHOTOS, builtin_photo
from tour.core.errors import TourError


PHOTO_MAX_PIXELS = 400_000_000  # twice a 200 MP phone photo: larger is refused in one line
DRAFT_SIDE = 1024  # a large JPEG decodes at the smallest 1/2^k scale that keeps both sides at least this


HEIF_SUFFIXES = (".heic", ".heif")  # iPhones save photos so; Pillow reads them once pillow-heif registers itself


def heif_opener() -> bool:
    """Teach Pillow HEIC/HEIF through pillow-heif where it is installed (optional: the tour does not need it)."""
    try:
        from pillow_heif import register_heif_opener
    except ImportError:
        return False
    register_heif_opener()
    return True


def read_image_file(path: Path):
    """An RGB PIL image, upright. Pillow reads JPEG, PNG, GIF (first frame), WebP, TIFF, BMP, ...; grey and palette
    images are converted to RGB, transparent ones laid on white. (torchvision.io's decoders are deprecated since
    0.29 for TorchCodec.)"""
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not path.is_file():
        raise TourError(f"image file not found: {path}; pass existing image files or built-in names "
                        f"({', '.join(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)})")
    if path.suffix.lower() in HEIF_SUFFIXES and not heif_opener():
        raise TourError(f"{path} is a HEIC/HEIF photo (an iPhone's default); Pillow reads those with pillow-heif: "
                        "pip install pillow-heif (or export the photo as JPEG)")
    limit = Image.MAX_IMAGE_PIXELS
    # Pillow refuses images over twice this (179 MP) as "decompression bombs"; a 200 MP phone photo is one. A photo
    # a user names is trusted up to PHOTO_MAX_PIXELS, and a JPEG decodes scaled down (the models see 224 px).
    Image.MAX_IMAGE_PIXELS = max(limit or 0, PHOTO_MAX_PIXELS // 2)
    try:
        with Image.open(path) as im:
            im.draft("RGB", (DRAFT_SIDE, DRAFT_SIDE))  # JPEG: decode at 1/2 to 1/8 scale; other formats ignore it
            # a phone stores a photo sideways with an EXIF "turn me" tag: the model must see it upright
            im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:  # transparent pixels: white, not
                im = Image.alpha_composite(Image.new("RGBA", im.size, "white"), im.convert("RGBA"))  # their RGB
            return im.convert("RGB")  # convert() reads the pixels, so errors surface here, not later
    except Image.DecompressionBombError:
        raise TourError(f"{path} has over {PHOTO_MAX_PIXELS / 1e6:g} megapixels, more than the tour reads; pass a "
                        "smaller copy (the models see 224 x 224 pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        raise TourError(f"{path} is not an image Pillow can read ({type(e).__name__}); "
                        "pass a JPEG, PNG, GIF, WebP, AVIF, TIFF or BMP file") from None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


# what a folder offers: Pillow's own formats, and HEIC (read through pillow-heif, or refused in one line)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".avif", ".tif", ".tiff", ".bmp", *HEIF_SUFFIXES)


def expand_folders(names: list[str]) -> list[str]:
    """Each folder among `names` replaced by its image files (by suffix, sorted), as `--images photos/` promises."""
    out = []
    for name in names:
        folder = Path(name)
        if not folder.is_dir():
            out.append(name)
            continue
        files = sorted(str(f) for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise TourError(f"{folder} is a folder with no image files in it ({', '.join(IMAGE_SUFFIXES)}); "
                            "pass image files, a folder that holds some, or built-in names")
        out += files
    return out


def load_images(names: list[str]) -> dict[str, object]:
    """name -> image, all read before anything runs so a bad path fails fast with nothing written."""
    if not names:
        raise TourError("no images to classify: --images was given nothing; pass image files or built-in "
                        f"names ({', '.join(SKIMAGE_PHOTOS + SKLEARN_PHOTOS)})")
    images = {}
    for name in expand_folders(names):
        builtin = name in SKIMAGE_PHOTOS + SKLEARN_PHOTOS and not Path(name).exists()
        key = name if builtin or Path(name).name in images else Path(name).name  # full path if names clash
        images[key] = builtin_photo(name) if builtin else read_image_file(Path(name))
    return images

"""Skeletons of the tour's pretrained models: every file but the weights, for a machine the weights cannot reach.

    python -m tour.tools.skeletons --out DIR

On a machine with the weight packages installed, writes DIR/<model>/ for each model: its config.json, tokenizer
and generation files (SmolLM2 and Whisper from the tour's converted folders, converting them first if needed), a
few MB in all. Where a weight package is missing, `TOUR_SKELETONS=DIR` makes the tour build that architecture with
seeded random weights from its skeleton (tour.core.stand_ins.pretrained_or_random): the checks that compare two ways on
the same weights still run, those that need pretrained weights read "not run (no pretrained weights here)".
The vision models' architecture is code: their skeleton is a note saying so.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tour.core import assets
from tour.core.cli import guarded

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf", ".h5", ".msgpack", ".onnx", ".ot")


def _hf_folders() -> dict[str, Path]:
    """skeleton name -> the installed model folder it is taken from (the converted ones are built if needed)."""
    from tour.tools.registry import load

    whisper = load("speech").whisper  # the speech stop's Whisper part: its converted folder
    return {assets.MINILM: assets.minilm_dir(), assets.SMOLLM2_CACHE: assets.smollm2_dir(),
            assets.WHISPER_CACHE: whisper.whisper_dir()}


def copy_skeleton(source: Path, target: Path) -> None:
    """The folder's top-level files that are not weights (a subfolder, like MiniLM's 1_Pooling, is left out)."""
    if assets.random_weights(source):
        raise SystemExit(f"{source} is itself a random-weights stand-in: write skeletons where the weight packages "
                         "are installed")
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES) and path.name != assets.RANDOM_MARKER:
            shutil.copyfile(path, target / path.name)


def write(out: Path) -> dict[str, int]:
    """Write every skeleton into `out`; returns name -> bytes written."""
    for name, source in _hf_folders().items():
        copy_skeleton(source, out / name)
    for name, how in ((assets.LITE0, "tour.core.models.random_lite0"),
                      (assets.MOBILENET, "tour.core.models.random_mobilenet_v2")):
        (out / name).mkdir(parents=True, exist_ok=True)
        (out / name / "skeleton.json").write_text(json.dumps({"model": assets.STAND_INS[name][0],
                                                              "architecture": how}, indent=2) + "\n")
    return {name: sum(p.stat().st_size for p in (out / name).iterdir()) for name in assets.STAND_INS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tour.tools.skeletons", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="folder to write the skeletons into (one subfolder per model)")
    args = parser.parse_args(argv)

    def body() -> int:
        out = Path(args.out).expanduser().resolve()
        sizes = write(out)
        for name, size in sizes.items():
            print(f"  {name:<24} {size / 1e3:8.1f} kB")
        print(f"skeletons: {sum(sizes.values()) / 1e6:.1f} MB in {out}\nuse them where the weight packages are "
              f"missing: {assets.SKELETONS_ENV}={out}")
        return 0

    return guarded("skeletons", body)


if __name__ == "__main__":
    raise SystemExit(main())

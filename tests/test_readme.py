"""The README is true: every command, flag, make target and file it names exists, and every figure it quotes says
when and where it was measured. A renamed flag or a moved file fails here, not in a newcomer's terminal."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _code_spans() -> list[str]:
    """Inline `code` and the lines of fenced blocks that are commands (bash), not sample output."""
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"```.*?```", "", README, flags=re.S))
    for lang, body in re.findall(r"```(\w*)\n(.*?)```", README, flags=re.S):
        if lang == "bash":
            spans += [line.split("#")[0] for line in body.splitlines()]
        elif lang == "text":  # a sample's command line: `$ tour doctor --quick`
            spans += [line[2:].split("#")[0] for line in body.splitlines() if line.startswith("$ ")]
    return spans


def _commands() -> list[list[str]]:
    """Each `tour ...` invocation the README shows, as its words (flags included)."""
    out = []
    for span in _code_spans():
        for m in re.finditer(r"(?:^|[;&|(]\s*|\s)(tour\s+(?:run|doctor|bench|list)\b[^;&|)]*)", span):
            out.append(m.group(1).split())
    return out


def _flags_of(config_cls) -> set[str]:
    return {"--" + f.name.replace("_", "-") for f in dataclasses.fields(config_cls)} | {"--help", "--no-doctor"}


def _placeholder(word: str) -> bool:
    """STOP, NAME, DIR...: a word the reader replaces."""
    return word.isupper() and word.isalpha()


def _config_for(words: list[str]):
    from tour.tools import bench, run_all
    from tour.tools.registry import STOPS, load

    if words[1] == "run":
        if _placeholder(words[2]):
            return None
        if words[2] == "all":
            return run_all.Config
        assert words[2] in STOPS, f"README runs an unknown stop: {' '.join(words)}"
        return load(words[2]).Config
    if words[1] == "bench":
        return bench.Config
    return None  # doctor / list: checked against their --help below


def test_the_readme_names_commands():
    assert len(_commands()) >= 10, "the README's commands were not found: has its format changed?"


@pytest.mark.parametrize("words", _commands(), ids=lambda w: " ".join(w)[:60])
def test_every_tour_command_and_flag_in_the_readme_exists(words):
    flags = [w.split("=")[0] for w in words if w.startswith("--")]
    config = _config_for(words)
    if words[1] == "run" and config is None:  # `tour run STOP --quick`: the flags every stop takes
        from tour.core.config import BaseConfig

        config = BaseConfig
    if config is not None:
        unknown = set(flags) - _flags_of(config)
        assert not unknown, f"README: `{' '.join(words)}` uses {sorted(unknown)}, which {words[1:3]} does not take"
        return
    import contextlib
    import io

    from tour.tools import cli

    text = io.StringIO()
    with contextlib.redirect_stdout(text), pytest.raises(SystemExit):
        cli.main([words[1], "--help"])
    unknown = [f for f in flags if f not in text.getvalue()]
    assert not unknown, f"README: `{' '.join(words)}` uses {unknown}, not in `tour {words[1]} --help`"


def test_every_make_target_in_the_readme_exists():
    targets = set(re.findall(r"(?m)^([a-z][\w-]*):", (ROOT / "Makefile").read_text()))
    named = {m for span in _code_spans() for m in re.findall(r"\bmake ([a-z][\w-]*)", span)}
    assert named, "no `make` target found in the README"
    assert not named - targets, f"README names make targets the Makefile lacks: {sorted(named - targets)}"


def test_every_file_the_readme_names_exists():
    paths = set()
    for span in _code_spans() + re.findall(r"`([^`]+)`", README):
        for token in span.split():
            token = token.strip("(),;:'\"")
            if re.fullmatch(r"(tour|tests|examples|\.ci|stacks)/[\w./-]+|pyproject\.toml|constraints[\w-]*\.txt|Makefile",
                            token) and not any(map(_placeholder, re.split(r"[/.]", token))):
                paths.add(token)
    assert paths, "no file path found in the README"
    generated = ("examples/notebooks",)  # written by `make notebooks`, ignored by git
    missing = sorted(p for p in paths if not (ROOT / p).exists() and not p.startswith(generated))
    assert not missing, f"README names files that don't exist: {missing}"


# A measured figure: a time, a rate, a ratio or a share, as a sample prints it or prose quotes it.
FIGURE = re.compile(r"\b\d+(\.\d+)?\s?(ms|s|minutes|min|GFLOP/s|GB/s|tok/s|/s|x)\b|\b\d+(\.\d+)?x\b|\d+%")
# Where and when: an ISO date and a machine word in the same paragraph (or the paragraph just before a sample).
DATED = re.compile(r"\b20\d\d-\d\d-\d\d\b")
MACHINE = re.compile(r"\b(\d+ (CPU )?cores?|CPU|GPU|H100|H200|A100|Xeon|EPYC|x86_64|aarch64|Apple)\b")


def _blocks() -> list[tuple[str, str]]:
    """(kind, text) in order: 'prose' paragraphs and 'sample' (```text) blocks."""
    out = []
    for part in re.split(r"(```\w*\n.*?```)", README, flags=re.S):
        if part.startswith("```text"):
            out.append(("sample", part))
        elif not part.startswith("```"):
            out += [("prose", p) for p in part.split("\n\n") if p.strip()]
    return out


def test_every_measured_figure_says_when_and_where():
    blocks = _blocks()
    undated = []
    for i, (kind, text) in enumerate(blocks):
        if kind == "sample":
            context = text + (blocks[i - 1][1] if i else "")
            measured = FIGURE.search(text)
        elif text.lstrip().startswith("|"):
            continue  # a table of what the stops show and check: floors and tolerances, not measurements
        else:
            context = text
            # prose quotes a measurement when it says something took so long, or quotes a run
            measured = FIGURE.search(text) and re.search(r"\b(took|from one run|in one run|measured here)\b", text,
                                                         re.I)
        if measured and not (DATED.search(context) and MACHINE.search(context)):
            undated.append(text.strip().splitlines()[0][:90])
    assert not undated, "figures without the date and machine they were measured on:\n" + "\n".join(undated)

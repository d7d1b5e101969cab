"""The one chatterbot-corpus reader (tour.core.chatterbot): tidied utterances, a reply kept after its question,
malformed entries skipped, bad topics and files as one-line errors; the nlp and generate stops read through it."""

import pytest

pytest.importorskip("yaml")

from tour.core import chatterbot  # noqa: E402
from tour.core.errors import TourError  # noqa: E402


@pytest.fixture
def corpus(tmp_path):
    (tmp_path / "food.yml").write_text("conversations:\n- - '  what   is\n    bread? '\n  - baked dough\n"
                                       "- - ~\n  - an answer with no question\n- a line that is no conversation\n")
    (tmp_path / "pets.yml").write_text("conversations:\n- - do cats purr\n  - yes they do\n")
    return tmp_path


def test_conversations_are_tidied_and_keep_their_places(corpus):
    assert chatterbot.topics(corpus) == ["food", "pets"]
    assert chatterbot.conversations("food", corpus) == (("what is bread?", "baked dough"),
                                                        ("", "an answer with no question"))


def test_bad_topic_and_bad_file_are_one_line_errors(corpus):
    with pytest.raises(TourError, match="no such chatterbot topic 'cooking'; choose from food, pets"):
        chatterbot.conversations("cooking", corpus)
    (corpus / "broken.yml").write_text("conversations: [\n  - unclosed")
    with pytest.raises(TourError, match="not readable YAML") as e:
        chatterbot.conversations("broken", corpus)
    assert "\n" not in str(e.value)


def test_the_installed_corpus_reads():
    pytest.importorskip("chatterbot_corpus")
    assert {"ai", "emotion", "trivia"} <= set(chatterbot.topics())
    convs = chatterbot.conversations("ai")
    assert len(convs) > 50 and all(isinstance(u, str) for c in convs for u in c)


def test_the_nlp_and_generate_stops_read_through_it(corpus, monkeypatch):
    from tour.core.data import corpus_rows
    from tour.generate.lora import qa_pairs

    assert corpus_rows(corpus, 1) == [{"text": "an answer with no question", "label": "food"},
                                      {"text": "baked dough", "label": "food"},
                                      {"text": "what is bread?", "label": "food"},
                                      {"text": "do cats purr", "label": "pets"},
                                      {"text": "yes they do", "label": "pets"}]
    pytest.importorskip("chatterbot_corpus")
    seen = []
    real = chatterbot.conversations
    monkeypatch.setattr(chatterbot, "conversations",
                        lambda topic, folder=None: seen.append(topic) or real(topic, folder))
    assert qa_pairs(["ai"]) and seen == ["ai"]

"""The NLP stop's numbers: probe and fine-tuned accuracy, reload parity, sensible search hits, bad input."""

import dataclasses
import json
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("datasets")

from tour import nlp  # noqa: E402
from tour.nlp import embeddings  # noqa: E402
from tour.core import data as nlp_data  # noqa: E402
from tour.core.errors import TourError  # noqa: E402

QUICK_FLOOR = nlp.ACCURACY_FLOOR  # quick mode: 80 texts per topic, 3 epochs of at most 32 tokens (full mode: 0.92)


@pytest.fixture(scope="module")
def result(tmp_path_factory, stop_device):
    out = tmp_path_factory.mktemp("out")
    return nlp.run(nlp.Config(quick=True, device=stop_device, out=str(out)))


def test_data_is_a_clean_stratified_split(result):
    assert result.labels == ["ai", "coding", "emotion", "trivia"]  # small-talk files dropped, the rest big enough
    assert result.train_size + result.test_size == 80 * len(result.labels)
    assert result.test_size == pytest.approx(0.2 * 80 * len(result.labels), abs=len(result.labels))


def test_corpus_has_no_text_under_two_topics():
    from tour.core.assets import chatterbot_english_dir

    rows = nlp_data.corpus_rows(chatterbot_english_dir(), 100)
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts)) > 1000
    assert "tech_support" not in {r["label"] for r in rows}  # 2,100 lines but only 20 distinct
    kept = nlp_data.corpus_rows(chatterbot_english_dir(), 100, ["conversations", "psychology"])
    assert {r["label"] for r in kept} == {"ai", "coding", "emotion", "trivia"}


def test_fine_tuning_beats_chance_and_learns(result):
    assert result.fine_tune.losses[-1] < result.fine_tune.losses[0]
    assert result.fine_tune.accuracy >= QUICK_FLOOR
    assert result.fine_tune.macro_f1 >= QUICK_FLOOR - 0.1
    assert result.probe_accuracy >= 0.6  # frozen embeddings already separate the topics


def test_confusion_matrix_png_written(result):
    png = Path(result.fine_tune.confusion_png)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_saved_model_reloads_with_same_predictions(result):
    saved = Path(result.reload.saved_dir)
    assert (saved / "model.safetensors").exists() and (saved / "tokenizer.json").exists()
    config = json.loads((saved / "config.json").read_text())
    assert sorted(config["id2label"].values()) == result.labels
    assert result.reload.reload_matches and result.reload.reload_max_score_diff < 1e-4
    assert result.reload.reload_predictions[0] == "coding"  # "how do i write a for loop in python?"


def test_every_check_passes(result):
    assert set(result.checks()) >= {"reload.reload_matches", "reload.reload_scores_close", "throughput.embed_same",
                                   "fine_tune.learned"}
    assert result.failed_checks() == []


def test_search_finds_texts_of_the_query_topic(result):
    expected = dict(zip(nlp.QUERIES, ["coding", "emotion", "trivia", "ai"]))
    for query, topic in expected.items():
        hits = result.search_hits[query]
        labels = [label for _, label, _ in hits]
        assert len(hits) == 3 and labels.count(topic) >= 2, (query, hits)
        scores = [s for _, _, s in hits]
        assert scores == sorted(scores, reverse=True) and 0 < scores[-1] <= 1


def test_batched_embedding_matches_the_pipeline(result):
    # speed is printed, never asserted; the three ways give the same vectors (fp32: 1e-4 seen; bf16: ~2e-3)
    speed = result.throughput
    assert speed.naive_per_s > 0 and speed.pipeline_batched_per_s > 0 and speed.batched_per_s > 0
    assert speed.embed_max_diff < (1e-4 if result.dtype == "fp32" else speed.embed_tol)
    assert speed.embed_tol == pytest.approx({"bf16": 2**-7}.get(result.dtype, nlp.EMBED_TOL))  # bf16: one epsilon


def test_inference_runs_in_the_auto_dtype(result):
    """auto is bf16 where the hardware has a bf16 fast path (this machine kind: AMX): the checks above then hold in
    bf16; fine-tuning stayed fp32 (its accuracy floor is checked on the same result)."""
    import torch

    from tour.core.dtypes import choose_dtype, dtype_name

    assert result.dtype == dtype_name(choose_dtype("auto", torch.device(result.device))[0])


def test_float_dtypes_are_the_device_helpers():
    from tour.core.dtypes import FLOAT_DTYPES

    field = next(f for f in dataclasses.fields(nlp.Config) if f.name == "dtype")
    assert tuple(field.metadata["choices"]) == FLOAT_DTYPES


def test_bad_dtype_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:  # a flag outside its choices is argparse's usage error
        nlp.main(["--quick", "--out", str(tmp_path), "--dtype", "int8"])
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("tour run nlp: error: argument --dtype") and "auto, fp32, bf16, fp16" in err
    with pytest.raises(TourError, match="--dtype"):  # the same check when a notebook builds the Config
        nlp.Config(dtype="int8")


def test_no_fast_path_runs_inference_in_fp32(tmp_path, monkeypatch):
    """A device without bf16/fp16 fast paths: auto is fp32, and the whole path runs (small settings: fast)."""
    from tour.core import dtypes

    monkeypatch.setattr(dtypes, "fast_paths", lambda device: ())
    got = nlp.run(nlp.Config(quick=True, device="cpu", out=str(tmp_path), max_per_topic=10, epochs=1, bench_texts=8))
    assert got.dtype == "fp32" and got.throughput.embed_tol == nlp.EMBED_TOL
    assert got.throughput.embed_max_diff < 1e-4 and got.reload.reload_max_score_diff < 1e-4
    assert got.fine_tune.learned is None and got.failed_checks() == []  # not the tour's settings: no accuracy floor


def test_length_batches_cap_tokens():
    batches = nlp_data.length_batches([5, 1, 9, 3, 30, 2], batch_size=3, max_tokens=40)
    assert batches == [[1, 5, 3], [0, 2], [4]]  # sorted by length; 3 x 9 > 40 tokens would pad too much


def test_grouped_batches_cover_every_text_once_with_little_padding():
    import random

    lengths = [random.Random(i).randint(3, 64) for i in range(300)]
    batches = nlp_data.grouped_batches(lengths, 16, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(300)) and max(map(len, batches)) == 16
    assert batches == nlp_data.grouped_batches(lengths, 16, seed=0) != nlp_data.grouped_batches(lengths, 16, seed=1)
    padded = lambda bs: sum(max(lengths[i] for i in b) * len(b) for b in bs)  # noqa: E731
    drawn = list(range(300))
    random.Random(0).shuffle(drawn)
    assert padded(batches) < 0.7 * padded([drawn[i:i + 16] for i in range(0, 300, 16)])  # random draws pad more


@pytest.fixture(scope="module")
def encoder():
    from tour.core.models import load_encoder

    return load_encoder(None, "cpu")


def test_embed_is_unit_length_and_order_preserving(encoder):
    tok, model = encoder
    texts = ["a much longer sentence about programming languages and compilers", "hi", "what is python?"]
    vecs = embeddings.embed(texts, tok, model, "cpu", batch_size=2)
    assert vecs.shape == (3, 384)
    assert vecs.norm(dim=1).sub(1).abs().max() < 1e-5
    alone = embeddings.embed(texts[1:2], tok, model, "cpu")
    assert (vecs[1] - alone[0]).abs().max() < 1e-5  # sorting by length must not mix rows up


def test_empty_text_list_is_an_error(encoder):
    with pytest.raises(TourError, match="empty"):
        embeddings.embed([], *encoder, "cpu")


def _fails(capsys, *argv):
    assert nlp.main(["--quick", "--device", "cpu", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    last = err.splitlines()[-1]  # progress bars may come first; the error is one line
    assert last.startswith("tour run nlp: error:")
    return last


def test_missing_model_path_is_one_line(tmp_path, capsys):
    err = _fails(capsys, "--out", str(tmp_path), "--model", str(tmp_path / "no-such-model"))
    assert "no such folder" in err


def test_folder_without_a_model_is_one_line(tmp_path, capsys):
    # transformers 4.57 raised AttributeError deep inside from_pretrained here; the folder is checked first
    (tmp_path / "empty-model").mkdir()
    err = _fails(capsys, "--out", str(tmp_path / "out"), "--model", str(tmp_path / "empty-model"))
    assert "has no config.json, no weights" in err and "no tokenizer" in err
    assert not (tmp_path / "out").exists()  # refused before anything is written


def test_folder_missing_weights_and_tokenizer_names_them(tmp_path, capsys):
    folder = tmp_path / "half-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}))
    err = _fails(capsys, "--out", str(tmp_path / "out"), "--model", str(folder))
    assert "has no weights" in err and "no tokenizer" in err and "no config.json" not in err


def test_complete_model_folder_passes_the_check():
    from tour.core.assets import minilm_dir
    from tour.core.models import missing_model_files, resolve_model

    assert missing_model_files(minilm_dir()) == [] and resolve_model(str(minilm_dir())) == str(minilm_dir())


def test_mixed_number_and_text_labels_load_as_strings(tmp_path):
    # pandas types each 10,000-row CSV chunk on its own: 0/1 labels first and "a"/"b" later made one chunk int64
    # and the next text (pyarrow ArrowInvalid on datasets 4.x); JSON's mixed column was decoded back to numbers
    rows = [(f"sentence number {i}", str(i % 2)) for i in range(10_050)] + [("another text", "a"), ("more text", "b")]
    csv = tmp_path / "mine.csv"
    csv.write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in rows) + "no label here,\n")
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text("".join(json.dumps({"text": t, "label": int(lab) if lab.isdigit() else lab}) + "\n"
                             for t, lab in rows) + json.dumps({"text": "no label", "label": None}) + "\n")
    for path in (csv, jsonl):
        ds = nlp_data.labelled_dataset(str(path), 2, [], None, 0)
        assert ds.features["label"].names == ["0", "1", "a", "b"] and len(ds) == len(rows)  # unlabelled row dropped


def test_data_without_label_column_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("text,topic\nhello there,a\nhow are you,b\n")
    assert "lacks column(s) label" in _fails(capsys, "--out", str(tmp_path), "--data", str(bad))


@pytest.mark.parametrize("name,content,says", [
    ("empty.csv", b"", "is empty; it needs a header line"),
    ("latin1.csv", "text,label\ncaf\xe9,drink\nsteak,food\n".encode("latin-1"),
     "is not UTF-8 text (it holds byte 0xe9"),
    ("cut.json", b'[{"text": "a", "label": ', "could not be read: ValueError"),
])
def test_unreadable_data_says_why(name, content, says, tmp_path, capsys):
    """The file's own fault, not the DatasetGenerationError datasets wraps it in."""
    bad = tmp_path / name
    bad.write_bytes(content)
    assert says in _fails(capsys, "--out", str(tmp_path / "out"), "--data", str(bad))
    assert not (tmp_path / "out").exists()


def test_single_label_is_one_line(tmp_path, capsys):
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"text": f"text number {i}", "label": "same"} for i in range(10)]))
    assert "one label only" in _fails(capsys, "--out", str(tmp_path), "--data", str(one))


@pytest.mark.parametrize("suffix", [".tsv", ".parquet", ".jsonl"])
def test_user_data_in_the_other_formats_a_spreadsheet_or_script_saves(suffix, tmp_path):
    """Tab-separated (with commas inside the texts), Parquet and JSON lines: the same labelled data set."""
    import pandas as pd

    rows = pd.DataFrame({"text": [f"sentence {i}, with a comma" for i in range(20)],
                         "label": ["ab"[i % 2] for i in range(20)]})
    path = tmp_path / f"mine{suffix}"
    {".tsv": lambda: rows.to_csv(path, sep="\t", index=False), ".parquet": lambda: rows.to_parquet(path),
     ".jsonl": lambda: rows.to_json(path, orient="records", lines=True)}[suffix]()
    ds = nlp_data.labelled_dataset(str(path), 100, [], None, 0)
    assert ds.features["label"].names == ["a", "b"] and len(ds) == 20 and ds["text"][0] == "sentence 0, with a comma"


def test_user_csv_loads_as_classlabel(tmp_path):
    data = tmp_path / "mine.csv"
    data.write_text("text,label\n" + "".join(f"sentence {i},{'ab'[i % 2]}\n" for i in range(20)))
    ds = nlp_data.labelled_dataset(str(data), 100, [], None, 0)
    train, test = nlp_data.split(ds, 0.2, 0)
    assert ds.features["label"].names == ["a", "b"]
    assert len(train) == 16 and len(test) == 4 and sorted(test["label"]) == [0, 0, 1, 1]


def test_your_data_is_shown_with_your_texts_not_the_tours(capsys):
    """With --data, classifying "who painted the mona lisa?" into cooking/sport/travel made every answer the same
    label at 0.35: the reload demo takes held-out texts of yours (true labels printed), the search your label names."""
    from datasets import ClassLabel, Dataset

    labels = ["cooking", "sport", "travel"]
    test = Dataset.from_list([{"text": "simmer the sauce", "label": 0}, {"text": "the striker scored", "label": 1}])
    test = test.cast_column("label", ClassLabel(names=labels))
    sentences, queries = nlp.your_texts(nlp.Config(data="mine.csv"), test, labels)
    assert type(sentences) is list and sentences == ["simmer the sauce", "the striker scored"] and queries == labels
    assert "true labels: cooking, sport" in capsys.readouterr().out
    assert nlp.your_texts(nlp.Config(data="mine.csv", queries=["when is it ready?"]), test, labels)[1] == \
        ["when is it ready?"]
    assert nlp.your_texts(nlp.Config(), test, labels) == (nlp.SENTENCES, nlp.QUERIES)  # the tour's corpus

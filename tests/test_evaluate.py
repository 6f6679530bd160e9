"""Evaluation: scores that match sacrebleu, stored once per adapter and dataset, shown with the gain."""

import json
import math

import pytest

from engine.generation import ChatEngine
from engine.roles import TRANSLATOR
from registry import evaluations
from tests.conftest import call_main, make_adapter, register_adapter
from training.data.datasets import load_dataset, split_holdout
from training.evaluation import evaluate as evaluation
from training.evaluation.scores import evaluation_examples, score_table

ROWS = [
    {"input": "The patient has a fever.", "output": "患者发烧。"},
    {"input": "Take one tablet after each meal.", "output": "每餐后服用一片。"},
    {"input": "Blood pressure should be measured twice a day.", "output": "血压应每天测量两次。"},
    {"input": "The wound should be kept clean.", "output": "伤口应保持清洁。"},
    {"input": "Drink plenty of water.", "output": "多喝水。"},
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir):
    return ChatEngine(str(tiny_model_dir), device="cpu")


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "eval.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return path


def test_bleu_and_chrf_on_known_strings_equal_sacrebleu():
    scores, signature = evaluation.translation_scores(
        ["患者发烧了。", "每天测量两次血压。"], ["患者发烧。", "血压应每天测量两次。"]
    )
    assert scores["bleu"] == pytest.approx(62.91120376646141, abs=1e-9)
    assert scores["chrf"] == pytest.approx(51.852116059757456, abs=1e-9)
    assert "tok:zh" in signature and "nc:6" in signature


def test_batched_generation_equals_one_by_one(engine):
    texts = [row["input"] for row in ROWS]
    greedy = TRANSLATOR.decoding.with_changes(max_new_tokens=12, num_beams=1)
    batched = engine.generate_batch(texts, role=TRANSLATOR, decoding=greedy, batch_size=3)
    assert batched == [engine.reply(text, role=TRANSLATOR, decoding=greedy).strip() for text in texts]


def test_base_evaluation_is_stored_once_and_reused(db, engine, data):
    row, cached = evaluation.evaluate(db, data=str(data), base=engine.base_model_id, engine=engine)
    assert not cached and row.kind == "translation" and row.adapter_id is None
    assert set(row.scores) == {"bleu", "chrf"} and "tok:zh" in row.signature
    predictions = [json.loads(line) for line in open(row.predictions_path, encoding="utf-8")]
    assert [p["reference"] for p in predictions] == [r["output"] for r in ROWS]
    assert set(predictions[0]) == {"input", "reference", "output"}
    again, cached = evaluation.evaluate(db, data=str(data), base=engine.base_model_id, engine=engine)
    assert cached and again.id == row.id and db["evaluations"].count == 1
    _, cached = evaluation.evaluate(db, data=str(data), base=engine.base_model_id, engine=engine, limit=3)
    assert not cached and db["evaluations"].count == 2, "a different number of examples is another evaluation"


def test_adapter_scores_show_the_gain_over_the_base(db, home, engine, data, tiny_model_dir):
    folder = make_adapter(tiny_model_dir, home / "adapters" / "med", seed=3)
    adapter = register_adapter(db, "med", folder, engine.base_model_id, role="translator")
    evaluation.evaluate(db, data=str(data), adapter_name="med", engine=engine)
    assert score_table(db, adapter)[0].keys() == {"dataset", "n", "bleu", "chrf"}
    evaluation.evaluate(db, data=str(data), base=engine.base_model_id, engine=engine)
    line = score_table(db, adapter)[0]
    assert line["gain bleu"] == pytest.approx(line["bleu"] - line["base bleu"], abs=0.011)
    assert {"bleu ±", "p bleu", "significant bleu", "chrf ±", "p chrf"} <= set(line), "the paired test ran"
    assert 0 <= line["p bleu"] <= 1 and line["bleu ±"] >= 0
    assert [e["input"] for e in evaluation_examples(db, adapter)] == [r["input"] for r in ROWS]


def test_persona_evaluation_reports_reference_loss_and_perplexity(db, engine, data):
    row, _ = evaluation.evaluate(
        db, data=str(data), base=engine.base_model_id, role_name="persona", engine=engine
    )
    assert row.kind == "loss" and row.scores["tokens"] > 0
    assert row.scores["perplexity"] == pytest.approx(math.exp(row.scores["loss"]))


def test_missing_adapter_and_malformed_files_give_one_line_and_store_nothing(db, data, tmp_path, capsys):
    assert evaluation.main(["--adapter", "nope", "--data", str(data)]) == 2
    assert "No adapter named 'nope'" in capsys.readouterr().err
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"input": "a"\n', encoding="utf-8")
    assert evaluation.main(["--base-only", "--data", str(broken)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: broken.jsonl line 1 is not valid JSON") and "\n" not in err
    assert db["evaluations"].count == 0


@pytest.mark.slow
def test_cli_prints_scores_with_signatures(home, data, tiny_model_dir):
    result = call_main(
        "training.evaluation.evaluate", "--base-only", "--base", tiny_model_dir, "--data", data
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "BLEU = " in result.stdout and "tok:zh" in result.stdout and "chrF = " in result.stdout
    again = call_main("training.evaluation.evaluate", "--base-only", "--base", tiny_model_dir, "--data", data)
    assert "already stored, not recomputed" in again.stdout


def test_holdout_is_reproducible_and_never_trained_on(data):
    dataset = load_dataset(data)
    kept, heldout = split_holdout(dataset, 0.4, seed=7)
    assert len(heldout) == 2 and len(kept.records) == 3
    assert not [r for r in heldout if r in kept.records]
    assert split_holdout(dataset, 0.4, seed=7)[1] == heldout
    with pytest.raises(Exception, match="--holdout"):
        split_holdout(dataset, 1.0, seed=7)


@pytest.mark.slow
def test_training_evaluates_the_adapter_and_base_on_the_heldout_split(trained_job, monkeypatch):
    """The session's tiny job (tests/conftest.py): 40 examples, 25% held out."""
    from registry import adapters, connect

    trained_job.at_home(monkeypatch)
    db = connect()
    adapter = adapters.get(db, trained_job.name)
    assert adapter.num_examples == 30 and adapter.metrics["num_heldout"] == 10
    line = score_table(db, adapter)[0]
    assert line["n"] == 10 and "gain bleu" in line
    log = (trained_job.home / "jobs" / str(adapter.job_id) / "train.log").read_text()
    assert "held-out evaluation (10 examples)" in log
    assert evaluations.base_counterpart(db, evaluations.for_adapter(db, adapter.id)[0]) is not None


@pytest.mark.parametrize("model", ["llama", "gemma"])
def test_batched_generation_without_stacked_row_caches_is_the_same(
    engine, gemma_like_dir, monkeypatch, model
):
    """The padded-prefill path (GPUs, caches we cannot stack) answers like the stacked-rows path,
    also where sliding-window layers (the tiny Gemma-3's window: 16) have cut their caches."""
    from engine import decoding

    if model == "gemma":
        engine = ChatEngine(f"local:{gemma_like_dir}", device="cpu")
    texts = ["The patient has a fever.", "Pain.", "Take two tablets daily after meals."]
    greedy = TRANSLATOR.decoding.with_changes(max_new_tokens=12, num_beams=1)
    stacked = engine.generate_batch(texts, role=TRANSLATOR, decoding=greedy, batch_size=3)
    monkeypatch.setattr(decoding, "stack_left_padded", lambda caches, pads: None)
    padded = engine.generate_batch(texts, role=TRANSLATOR, decoding=greedy, batch_size=3)
    assert padded == stacked


def test_the_paired_bootstrap_tells_a_real_gain_from_chance(tmp_path):
    from core.errors import UserError
    from training.evaluation.significance import compare_prediction_files, paired_bootstrap

    references = [f"患者第{i}天发烧，需要多喝水并按时服药。" for i in range(40)]
    good = [reference if i % 3 else reference[: 8 + i % 5] for i, reference in enumerate(references)]
    poor = ["病人。"] * 40
    comparisons, signature = paired_bootstrap(references, good, poor)
    bleu = comparisons["bleu"]
    assert (
        bleu.system > bleu.baseline and bleu.significant and bleu.p_value < 0.05 and bleu.verdict == "better"
    )
    assert bleu.system_ci > 0 and comparisons["chrf"].significant
    assert 0 < bleu.difference_low < bleu.difference < bleu.difference_high  # the gain's own interval
    assert "bs:1000" in signature and "tok:zh" in signature
    tie, _ = paired_bootstrap(references, good, good)
    assert not tie["bleu"].significant and tie["bleu"].verdict == "unclear"
    assert tie["bleu"].difference_low == tie["bleu"].difference_high == 0
    worse, _ = paired_bootstrap(references, poor, good)
    assert worse["bleu"].verdict == "worse" and worse["bleu"].difference_high < 0

    def write(name, outputs, refs=references):
        path = tmp_path / name
        rows = [
            {"input": str(i), "reference": r, "output": o}
            for i, (r, o) in enumerate(zip(refs, outputs, strict=True))
        ]
        path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
        return path

    from_files, _ = compare_prediction_files(write("a.jsonl", good), write("b.jsonl", poor))
    assert from_files["bleu"] == bleu
    with pytest.raises(UserError, match="not of the same sentences"):
        compare_prediction_files(write("a.jsonl", good), write("c.jsonl", poor[:39], references[:39]))


def test_two_adapters_on_the_same_sentences_can_be_compared_pair_by_pair(
    db, home, engine, data, tiny_model_dir
):
    from training.evaluation.scores import head_to_head, rivals

    for name, seed in (("first", 3), ("second", 4)):
        folder = make_adapter(tiny_model_dir, home / "adapters" / name, seed=seed)
        register_adapter(db, name, folder, engine.base_model_id, role="translator")
        evaluation.evaluate(db, data=str(data), adapter_name=name, engine=engine)
    from registry import adapters as adapter_rows

    found = rivals(db, adapter_rows.get(db, "first"))
    assert list(found) == ["second"]
    table = head_to_head(*found["second"], "first", "second")
    assert [row["metric"] for row in table] == ["bleu", "chrf"]
    assert {"first", "second", "p"} <= set(table[0]) and " ± " in table[0]["first"]
    assert table[0]["verdict"] in {"✅ significantly better", "⚠️ significantly worse", "– not significant"}


def test_untranslated_terms_count_english_words_the_reference_translated():
    from training.evaluation.evaluate import untranslated_terms

    found = untranslated_terms(
        ["患者接受了insulin治疗。", "HIV 检测阴性。", "血压正常。", "给予 metformin 和 Insulin。"],
        ["患者接受了胰岛素治疗。", "HIV 检测阴性。", "血压正常。", "给予二甲双胍和胰岛素。"],
    )
    assert found["sentences"] == 2 and found["share"] == 0.5  # HIV is kept by the reference too
    assert found["most_common"][0] == ("insulin", 2)

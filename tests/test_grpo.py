"""GRPO jobs are jobs: real trainer processes (TRL's GRPOTrainer) that sample completions, score them
with rewards checked here by hand, learn a toy task whose best answer is known, continue a parent
adapter into a child with its lineage and scored checkpoints, cancel, die and resume, give one
process's losses on two, and ask a real judge server, refusing one that does not answer."""

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import UserError
from core.home import PROJECT_ROOT
from engine import catalogue
from engine.generation import ChatEngine
from registry import adapters, checkpoints, jobs
from tests.conftest import ApiServer, free_port, make_adapter, register_adapter, run_module, wait_until
from training.evaluation import rewards
from training.jobs import lifecycle
from training.parallel import launchers
from training.trainer.progress import COMPLETE_MARKER

SAMPLE = PROJECT_ROOT / "data" / "translator_sample.jsonl"
# a prompt the 135M built-in model answers with a number of points (the default is for capable judges)
SMALL_JUDGE_PROMPT = (
    "Question: {question}\nAnswer: {answer}\nOn a scale from 1 to 10, how many points does this answer "
    "deserve? Give only the number."
)
QUICK = ("--batch-size", "2", "--grad-accum", "1", "--lr", "1e-3", "--completion-length", "8")


# --- the rewards, by hand ---------------------------------------------------------------------------


def test_each_reward_gives_the_value_worked_out_by_hand():
    assert rewards.chrf("患者发热。", "患者发热。") == 1.0
    assert rewards.chrf("", "患者发热。") == 0.0
    assert rewards.bleu("患者发热。", "患者发热。") == 1.0
    # source words: the, patient, has, fever, and, cough (6); kept although translated: fever, cough
    assert (
        rewards.english("患者有 fever 和 cough。", "患者有发热和咳嗽。", "The patient has fever and cough.")
        == -2 / 6
    )
    # CT is kept by the reference too: no fault; "shows" and "fever" were translated, fever was kept
    assert rewards.english("CT 显示 fever", "CT 显示发热", "CT shows fever") == -1 / 3
    assert rewards.english("好", "好", "") == 0.0
    assert rewards.length("一二三", "一二三四五六") == 0.5
    assert rewards.length("一 二 三", "一二三") == 1.0  # spaces do not count
    assert rewards.language("我爱 you", "我爱你") == 2 / 5  # 2 Chinese of 5 letters
    assert rewards.language("I love you", "Je t'aime") == 1.0
    assert rewards.clean("好<eod>", ["<eod>", "<|im_end|>"]) == 0.0 and rewards.clean("好", ["<eod>"]) == 1.0
    assert rewards.length_range("abc", 5, 10) == 3 / 5 and rewards.length_range(" abcdef ", 5, 10) == 1.0
    assert rewards.length_range("x" * 20, 5, 10) == 10 / 20
    assert rewards.ends([5, 2], stop_ids=[2]) == 1.0 and rewards.ends([5, 6], stop_ids=[2]) == 0.0
    assert rewards.parse_rating("7") == 6 / 9 and rewards.parse_rating("Score: 10/10") == 1.0
    assert rewards.parse_rating("no idea") is None


def test_weights_are_read_and_refused_with_what_is_accepted(monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")
    assert rewards.parse_weights("chrf=1, english=0.5,ends") == {"chrf": 1.0, "english": 0.5, "ends": 1.0}
    assert rewards.default_weights("translation") == {"chrf": 1.0, "english": 0.5}
    assert rewards.default_weights("loss") == {"language": 1.0, "clean": 1.0, "ends": 0.5}
    for text, message in [
        ("chrX=1", "no reward named 'chrX'"),
        ("chrf=much", "must be a number from 0 to 100, not 'much'"),
        ("chrf=0", "at least one reward a positive weight"),
    ]:
        with pytest.raises(UserError, match=message):
            rewards.parse_weights(text)
    with pytest.raises(UserError, match="from:to characters"):
        rewards.parse_range("9:2")


def test_the_trl_functions_weigh_each_completion_against_its_own_reference():
    functions, weights = rewards.for_trl({"chrf": 1.0, "english": 0.5, "ends": 0.0}, rewards.Context())
    assert [f.__name__ for f in functions] == ["chrf", "english"] and weights == [1.0, 0.5]
    chrf, english = functions
    columns = {"reference": ["发热", "咳嗽"], "source": ["fever", "cough"]}
    assert chrf(["p", "p"], ["发热", "cough"], [[1], [2]], **columns) == [1.0, 0.0]
    assert english(["p", "p"], ["发热", "cough"], [[1], [2]], **columns) == [0.0, -1.0]


# --- jobs -------------------------------------------------------------------------------------------


@pytest.fixture
def parent(db, home, tiny_model_dir):
    folder = make_adapter(tiny_model_dir, home / "adapters" / "med-zh", seed=1)
    base = catalogue.parse_model_id(str(tiny_model_dir)).model_id
    return register_adapter(db, "med-zh", folder, base, role="translator", prompt_format="chat_template")


def _grpo(name: str, *extra: str):
    return run_module(
        "training.train", "--method", "grpo", "--parent", "med-zh", "--data", SAMPLE, "--name", name,
        *QUICK, *extra,
    )  # fmt: skip


@pytest.fixture
def say_yes(tmp_path) -> Path:
    """Sixteen prompts whose one right answer is `yes`."""
    rows = [{"input": f"say yes {word}", "output": "yes"} for word in "abcdefghijklmnop"]
    path = tmp_path / "yes.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.mark.slow
def test_a_grpo_job_raises_its_reward_on_a_task_whose_best_answer_is_known(
    db, home, letters_model_dir, say_yes
):
    done = run_module(
        "training.train", "--method", "grpo", "--base", letters_model_dir, "--role", "assistant",
        "--data", say_yes, "--name", "says-yes", "--rewards", "chrf=1", "--generations", "8",
        "--completion-length", "4", "--kl", "0", "--lr", "1e-2", "--max-steps", "60", "--batch-size", "2",
        "--grad-accum", "1", "--lora-dropout", "0", "--holdout", "0", "--skip-evaluation",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    steps = jobs.metrics_for(db, adapters.get(db, "says-yes").job_id)
    chrf = [step["extra"]["rewards/chrf/mean"] for step in steps]
    first, last = sum(chrf[:10]) / 10, sum(chrf[-10:]) / 10
    print(f"chrF against 'yes': first 10 steps {first:.3f}, last 10 steps {last:.3f}")
    assert len(chrf) == 60 and last > first + 0.15, chrf
    samples = steps[-1]["extra"]["samples"]
    assert samples and all(set(sample["rewards"]) == {"chrf"} for sample in samples)


@pytest.mark.slow
def test_a_grpo_child_of_a_translator_keeps_its_lineage_scores_checkpoints_and_logs_each_reward(
    db, home, parent
):
    done = _grpo("med-zh-grpo", "--max-steps", "4", "--save-steps", "2", "--holdout", "0.1")
    assert done.returncode == 0, done.stderr[-3000:]
    child = adapters.get(db, "med-zh-grpo")
    assert (child.parent_id, child.parent_name, child.method) == (parent.id, "med-zh", "grpo")
    assert (
        child.hyperparameters["rewards"] == "chrf=1,english=0.5" and child.hyperparameters["generations"] == 4
    )
    scored = checkpoints.for_job(db, child.job_id)
    assert [row.step for row in scored] == [2, 4] and {row.kind for row in scored} == {"translation"}
    steps = jobs.metrics_for(db, child.job_id)
    assert [step["step"] for step in steps] == [1, 2, 3, 4]
    for step in steps:
        assert {"rewards/chrf/mean", "rewards/english/mean", "reward", "kl"} <= set(step["extra"])
        assert len(step["extra"]["samples"]) == 4
    sample = steps[-1]["extra"]["samples"][0]
    inputs = [json.loads(line)["input"] for line in SAMPLE.read_text().splitlines()]
    assert any(text in sample["prompt"] for text in inputs)  # the prompt as chat renders it
    assert set(sample["rewards"]) == {"chrf", "english"}


@pytest.mark.slow
def test_a_cancelled_then_killed_grpo_job_resumes_from_its_checkpoints_to_a_child(db, home, parent):
    process = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--method", "grpo", "--parent", "med-zh",
         "--data", str(SAMPLE), "--name", "resumed", *QUICK, "--max-steps", "12", "--save-steps", "3",
         "--skip-evaluation"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    job = wait_until(
        lambda: next((j for j in jobs.list_all(db) if (j.step or 0) >= 4), None), what="step 4", timeout=300
    )
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=120) == 143
    assert lifecycle.get(db, job.id).status == "cancelled"
    saved = sorted((home / "jobs" / str(job.id)).glob("checkpoints/checkpoint-*"))
    assert saved and all((c / COMPLETE_MARKER).is_file() for c in saved)
    resumed = subprocess.Popen(
        [sys.executable, "-m", "training.train", "--name", "resumed", "--resume"],
        cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_until(lambda: (jobs.get(db, job.id).step or 0) >= 8, what="step 8 after the resume", timeout=300)
    resumed.send_signal(signal.SIGKILL)
    resumed.wait()
    assert lifecycle.get(db, job.id).status == "interrupted"
    finished = run_module("training.train", "--name", "resumed", "--resume")
    assert finished.returncode == 0, finished.stderr[-3000:]
    child = adapters.get(db, "resumed")
    assert child.metrics["steps"] == 12 and child.parent_name == "med-zh" and child.method == "grpo"
    assert (home / "jobs" / str(job.id) / "train.log").read_text().count("resuming from") == 2


@pytest.mark.slow
def test_two_processes_sample_the_same_completions_and_give_the_grpo_losses_of_one(
    db, home, letters_model_dir, say_yes
):
    common = [
        "--method", "grpo", "--base", str(letters_model_dir), "--role", "assistant", "--data", str(say_yes),
        "--rewards", "chrf=1", "--generations", "4", "--completion-length", "4", "--lr", "1e-2",
        "--max-steps", "3", "--batch-size", "2", "--grad-accum", "1", "--lora-dropout", "0", "--holdout", "0",
        "--skip-evaluation",
    ]  # fmt: skip
    one = run_module("training.train", *common, "--name", "one")
    assert one.returncode == 0, one.stderr[-3000:]
    command = launchers.trainer_command(launchers.Launch(processes=2), [*common, "--name", "two"])
    two = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stdout[-3000:] + two.stderr[-3000:]
    rows = {name: adapters.get(db, name) for name in ("one", "two")}
    steps = {name: jobs.metrics_for(db, row.job_id) for name, row in rows.items()}
    rewards_of = {name: [s["extra"]["rewards/chrf/mean"] for s in rows_] for name, rows_ in steps.items()}
    losses = {name: [s["loss"] for s in rows_] for name, rows_ in steps.items()}
    print("losses", losses, "rewards", rewards_of)
    assert rewards_of["one"] == pytest.approx(rewards_of["two"], abs=1e-6)  # the same completions
    for single, parallel in zip(losses["one"], losses["two"], strict=True):
        assert abs(parallel - single) <= 1e-4 * max(abs(single), 1e-3), losses
    assert "rank 1 of 2" in (Path(jobs.get(db, rows["two"].job_id).job_dir) / "rank1.log").read_text()


def test_a_judge_that_does_not_answer_is_refused_before_a_job_exists(db, home, parent, monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")
    closed = f"http://127.0.0.1:{free_port()}/v1"
    settings = {
        "method": "grpo",
        "parent": "med-zh",
        "data": str(SAMPLE),
        "name": "judged",
        "rewards": "judge=1",
    }
    with pytest.raises(UserError, match="needs an endpoint"):
        lifecycle.check_request(db, settings)
    with pytest.raises(UserError, match=f"The judge at {closed} \\(model m\\) did not answer"):
        lifecycle.check_request(db, {**settings, "judge_url": closed, "judge_model": "m"})
    with pytest.raises(UserError, match="only \\{question\\}, \\{answer\\} and \\{reference\\}"):
        lifecycle.check_request(
            db, {**settings, "judge_url": closed, "judge_model": "m", "judge_prompt": "{answer} {score}"}
        )
    assert jobs.list_all(db) == [] and not (home / "jobs").exists() or not any((home / "jobs").iterdir())


@pytest.mark.slow
def test_a_real_server_judges_each_completion(db, home, parent, builtin_dir):
    judge_engine = ChatEngine(str(builtin_dir), device="cpu")  # SmolLM2-135M-Instruct, our own server
    with ApiServer(judge_engine) as judge:
        done = _grpo(
            "judged", "--max-steps", "2", "--skip-evaluation", "--generations", "2",
            "--rewards", "judge=1,chrf=1", "--judge-url", judge.url,
            "--judge-model", judge_engine.base_model_id, "--judge-prompt", SMALL_JUDGE_PROMPT,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        asked = judge.scheduler.widest
    steps = jobs.metrics_for(db, adapters.get(db, "judged").job_id)
    judged = [
        value
        for step in steps
        for sample in step["extra"]["samples"]
        if (value := sample["rewards"].get("judge")) is not None
    ]
    print("judge's ratings (0-1):", judged, "most requests answered together:", asked)
    assert judged and all(0 <= value <= 1 for value in judged)
    assert all("rewards/judge/mean" in step["extra"] for step in steps)


def test_preference_data_and_uneven_prompts_are_refused_before_a_job_exists(db, home, parent, monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "en")
    pairs_file = PROJECT_ROOT / "data" / "translator_pairs.jsonl"
    with pytest.raises(UserError, match="GRPO learns from instruction data .* translator_pairs.jsonl holds"):
        lifecycle.check_request(
            db, {"method": "grpo", "parent": "med-zh", "data": str(pairs_file), "name": "g"}
        )
    settings = {"method": "grpo", "parent": "med-zh", "data": str(SAMPLE), "name": "g", "batch_size": 3}
    with pytest.raises(UserError, match="prompts per step .* = 3\\) must divide evenly among the 2"):
        lifecycle.check_request(db, {**settings, "grad_accum": 1, "processes": 2})
    with pytest.raises(UserError, match="no reward named 'chrX'"):
        lifecycle.check_request(db, {**settings, "rewards": "chrX=1"})
    assert jobs.list_all(db) == []

"""OpenAI's Files and Fine-tuning APIs on our server, driven by the official `openai` client: real
uploads, real trainer processes (training.jobs.lifecycle, as the page's Start), the adapter served at
once by the same server."""

import json
import subprocess
import sys
import time

import openai
import pytest

from core import home
from core.home import PROJECT_ROOT
from engine.generation import ChatEngine
from registry import files as file_rows
from registry import jobs as job_rows
from studio import accounts
from studio.accounts import Asker
from tests.conftest import SAMPLE, ApiServer, wait_until
from training.jobs import lifecycle

MARV = [
    {
        "messages": [
            {"role": "system", "content": "Marv is a factual chatbot that is also sarcastic."},
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
    }
    for question, answer in [
        ("What's the capital of France?", "Paris, as if everyone doesn't know that already."),
        ("Who wrote 'Romeo and Juliet'?", "Oh, just some guy named William Shakespeare. Ever heard of him?"),
        ("How far is the Moon from Earth?", "Around 384,400 kilometers. Give or take a few."),
        ("What is the boiling point of water?", "100 degrees Celsius at sea level. Shocking, I know."),
        ("How many legs does a spider have?", "Eight. More than you, and they use them better."),
        ("What colour is the sky?", "Blue, on a good day. Look up sometime."),
    ]
]
PREFERENCES = [
    {
        "input": {"messages": [{"role": "user", "content": question}]},
        "preferred_output": [{"role": "assistant", "content": good}],
        "non_preferred_output": [{"role": "assistant", "content": bad}],
    }
    for question, good, bad in [
        ("Translate: fever", "发热", "fever"),
        ("Translate: cough", "咳嗽", "cough"),
        ("Translate: headache", "头痛", "headache"),
        ("Translate: nausea", "恶心", "nausea"),
    ]
]
QUICK = {"n_epochs": 1, "batch_size": 2, "learning_rate_multiplier": 2}


def jsonl(rows) -> bytes:
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows).encode()


@pytest.fixture
def server(home, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("TRANSLATOR_LANG", "zh")  # the API answers in English whatever the studio's language
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    with ApiServer(engine) as running:
        yield running


def follow(client, job_id: str, timeout: float = 300):
    """The job once it has ended, read as a script would: retrieve until it is no longer running."""
    job = wait_until(
        lambda: (
            (j := client.fine_tuning.jobs.retrieve(job_id)).status
            not in ("validating_files", "queued", "running")
            and j
        ),
        what=f"{job_id} to end",
        timeout=timeout,
        every=0.5,
    )
    return job


@pytest.mark.slow
def test_a_chat_file_trains_an_adapter_that_answers_at_once_and_the_page_s_job_is_cancelled_here(
    server, db, tiny_model_dir
):
    client = server.client()
    uploaded = client.files.create(file=("marv.jsonl", jsonl(MARV)), purpose="fine-tune")
    assert uploaded.id.startswith("file-") and uploaded.filename == "marv.jsonl"
    assert uploaded.bytes == len(jsonl(MARV)) and uploaded.purpose == "fine-tune"
    assert client.files.content(uploaded.id).read() == jsonl(MARV)
    assert [f.id for f in client.files.list()] == [uploaded.id]

    model = str(tiny_model_dir)
    held_out = client.files.create(file=("marv-valid.jsonl", jsonl(MARV[:2])), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=uploaded.id,
        validation_file=held_out.id,
        suffix="marv",
        seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": QUICK}},
        metadata={"course": "week 3"},
    )
    assert job.id.startswith("ftjob-") and job.status in ("queued", "running") and job.model == model
    assert job.hyperparameters.batch_size == 2 and job.hyperparameters.n_epochs == 1
    # the same job is on the training page
    row = lifecycle.get(db, int(job.id.removeprefix("ftjob-")))
    assert row.dataset_path == file_rows.get(db, uploaded.id).path and row.owner_id is None
    assert row.config["lr_scale"] == 2 and row.config["seed"] == 7 and row.config["role"] == "assistant"
    assert row.config["validation_data"] == file_rows.get(db, held_out.id).path and row.config["holdout"] == 0
    with pytest.raises(openai.BadRequestError, match=f"Job #{row.id} is training on file"):
        client.files.delete(held_out.id)

    ended = follow(client, job.id)
    assert ended.status == "succeeded", ended.error
    assert ended.fine_tuned_model.startswith("marv-") and ended.metadata == {"course": "week 3"}
    assert ended.training_file == uploaded.id and ended.finished_at >= ended.created_at
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    messages = [event.message for event in events]
    print("events, newest first:", messages)
    assert messages[0] == "The job has successfully completed"
    assert messages[1] == f"New fine-tuned model created: {ended.fine_tuned_model}"
    assert messages[-1] == f"Created fine-tuning job: {job.id}"
    checkpoints = list(client.fine_tuning.jobs.checkpoints.list(job.id))
    print("checkpoints:", [(c.step_number, c.metrics) for c in checkpoints])
    assert checkpoints and all(c.metrics.full_valid_loss == c.metrics.valid_loss > 0 for c in checkpoints)
    assert ended.validation_file == held_out.id
    steps = [event for event in events if event.type == "metrics"]
    assert steps and all(event.data["train_loss"] > 0 for event in steps)
    page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert [e.id for e in page.data] == [e.id for e in events[:2]] and page.has_more
    after = client.fine_tuning.jobs.list_events(job.id, limit=2, after=page.data[-1].id)
    assert [e.id for e in after.data] == [e.id for e in events[2:4]]

    # served by this very server, at once
    assert ended.fine_tuned_model in [m.id for m in client.models.list()]
    reply = client.chat.completions.create(
        model=ended.fine_tuned_model,
        messages=[
            {"role": "system", "content": MARV[0]["messages"][0]["content"]},
            {"role": "user", "content": "Hi"},
        ],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].finish_reason in ("stop", "length")

    # a job started on the page is in the API, and the API cancels it
    page_job = lifecycle.submit_form(
        db,
        {
            "base": model,
            "data": str(SAMPLE),
            "name": "from-the-page",
            "epochs": 50,
            "batch_size": 1,
            "grad_accum": 1,
        },
    )
    listed = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in listed.data] == [f"ftjob-{page_job.id}"] and listed.has_more
    assert listed.data[0].training_file == SAMPLE.name and listed.data[0].method.type == "supervised"
    wait_until(
        lambda: (job_rows.get(db, page_job.id).step or 0) >= 1, what="the page's job to train", timeout=180
    )
    cancelled = client.fine_tuning.jobs.cancel(f"ftjob-{page_job.id}")
    assert cancelled.status in ("running", "cancelled")
    assert follow(client, f"ftjob-{page_job.id}").status == "cancelled"
    with pytest.raises(openai.BadRequestError, match="nothing to cancel"):
        client.fine_tuning.jobs.cancel(f"ftjob-{page_job.id}")
    stopped_at = job_rows.get(db, page_job.id).step
    resumed = client.fine_tuning.jobs.resume(f"ftjob-{page_job.id}")
    assert resumed.status in ("queued", "running")
    wait_until(
        lambda: (job_rows.get(db, page_job.id).step or 0) > stopped_at, what="the resumed job", timeout=180
    )
    client.fine_tuning.jobs.cancel(f"ftjob-{page_job.id}")
    assert follow(client, f"ftjob-{page_job.id}").status == "cancelled"
    log = (home.jobs_dir() / str(page_job.id) / "train.log").read_text()
    assert f"checkpoint-{stopped_at}" in log, log[-2000:]

    # deleting the adapter takes it out of what the server serves
    deleted = client.models.delete(ended.fine_tuned_model)
    assert deleted.deleted and ended.fine_tuned_model not in [m.id for m in client.models.list()]


@pytest.mark.slow
def test_openai_s_preference_format_trains_a_dpo_job(server, tiny_model_dir):
    client = server.client()
    pairs = client.files.create(file=("prefs.jsonl", jsonl(PREFERENCES)), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model=str(tiny_model_dir),
        training_file=pairs.id,
        method={"type": "dpo", "dpo": {"hyperparameters": {**QUICK, "beta": 0.2}}},
    )
    assert job.method.type == "dpo" and job.hyperparameters.beta == 0.2
    ended = follow(client, job.id)
    assert ended.status == "succeeded", ended.error
    assert ended.fine_tuned_model.startswith("ft-")
    assert ended.fine_tuned_model in [m.id for m in client.models.list()]


def test_bad_files_and_fields_are_refused_naming_what_is_wrong_and_nothing_is_kept(
    server, db, tiny_model_dir
):
    client = server.client()
    broken = jsonl(MARV[:2]) + b'{"messages": [{"role": "user", "content": "no answer"}]}\n'
    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("broken.jsonl", broken), purpose="fine-tune")
    error = refused.value.body
    assert error["param"] == "file" and error["code"] == "invalid_file"
    assert error["message"].startswith("broken.jsonl: row 3: after an optional system message"), error
    with pytest.raises(openai.BadRequestError, match="line 2 is not valid JSON"):
        client.files.create(file=("cut.jsonl", jsonl(MARV[:1]) + b'{"messages": [\n'), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="purpose must be 'fine-tune', not 'batch'"):
        client.files.create(file=("marv.jsonl", jsonl(MARV)), purpose="batch")
    assert file_rows.list_all(db) == [] and list(home.files_dir().iterdir()) == []

    uploaded = client.files.create(file=("marv.jsonl", jsonl(MARV)), purpose="fine-tune")
    for hyperparameters, param in [
        ({"n_epochs": 0}, "hyperparameters.n_epochs"),
        ({"batch_size": "big"}, "hyperparameters.batch_size"),
        ({"learning_rate_multiplier": -1}, "hyperparameters.learning_rate_multiplier"),
    ]:
        with pytest.raises(openai.BadRequestError) as refused:
            client.fine_tuning.jobs.create(
                model=str(tiny_model_dir), training_file=uploaded.id, hyperparameters=hyperparameters
            )
        assert refused.value.body["param"] == param, refused.value.body
        assert refused.value.body["message"].startswith(f"`{param}` must be"), refused.value.body
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=uploaded.id, method={"type": "reinforcement"}
        )
    assert refused.value.body["param"] == "method.type"
    with pytest.raises(openai.BadRequestError) as refused:
        client.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file="file-nothing")
    assert refused.value.body["param"] == "training_file" and refused.value.body["code"] == "file_not_found"
    with pytest.raises(openai.BadRequestError, match="holds instruction data"):  # the trainer's own check
        client.fine_tuning.jobs.create(
            model=str(tiny_model_dir), training_file=uploaded.id, method={"type": "dpo"}
        )
    with pytest.raises(openai.NotFoundError) as refused:
        client.fine_tuning.jobs.create(model="no-such-model", training_file=uploaded.id)
    assert refused.value.body["param"] == "model"
    assert job_rows.list_all(db) == []  # no refused request became a job

    for missing in ("ftjob-424242", "ftjob-x", "nothing"):
        with pytest.raises(openai.NotFoundError):
            client.fine_tuning.jobs.retrieve(missing)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.list_events("ftjob-424242")
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve("file-nothing")
    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted and file_rows.list_all(db) == [] and list(home.files_dir().iterdir()) == []


def test_in_team_mode_a_key_sees_and_controls_only_its_account_s_files_and_jobs(home, db, tiny_model_dir):
    (ana, _), (bo, _) = accounts.create_account(db, "ana"), accounts.create_account(db, "bo")
    ana_key, bo_key = accounts.create_key(db, Asker(ana), "script"), accounts.create_key(db, Asker(bo))
    engine = ChatEngine(str(tiny_model_dir), device="cpu")
    with ApiServer(engine, team=True) as running:
        as_ana, as_bo = running.client(ana_key), running.client(bo_key)
        mine = as_ana.files.create(file=("marv.jsonl", jsonl(MARV)), purpose="fine-tune")
        assert file_rows.get(db, mine.id).owner_id == ana.id
        assert [f.id for f in as_bo.files.list()] == []
        for read in (as_bo.files.retrieve, as_bo.files.content, as_bo.files.delete):
            with pytest.raises(openai.NotFoundError):
                read(mine.id)
        with pytest.raises(openai.BadRequestError) as refused:
            as_bo.fine_tuning.jobs.create(model=str(tiny_model_dir), training_file=mine.id)
        assert refused.value.body["code"] == "file_not_found"
        started = time.time()
        ana_job = job_rows.create(db, adapter_name="ana-job", config={"method": "sft"}, owner_id=ana.id)
        job_rows.update(db, ana_job.id, status="cancelled", finished_at=started)
        assert [j.id for j in as_ana.fine_tuning.jobs.list()] == [f"ftjob-{ana_job.id}"]
        assert list(as_bo.fine_tuning.jobs.list()) == []
        for act in (
            as_bo.fine_tuning.jobs.retrieve,
            as_bo.fine_tuning.jobs.cancel,
            as_bo.fine_tuning.jobs.resume,
        ):
            with pytest.raises(openai.NotFoundError):
                act(f"ftjob-{ana_job.id}")
        with pytest.raises(openai.AuthenticationError):
            running.client("sk-tr-forged").files.list()


@pytest.mark.slow
def test_the_readme_s_script_from_openai_s_guide_runs_unchanged_but_for_url_key_and_model(
    server, tiny_model_dir
):
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    script = readme.split("<!-- openai-fine-tuning-script -->\n```python\n", 1)[1].split("```", 1)[0]
    changed = (
        script.replace("http://127.0.0.1:8000/v1", server.url)
        .replace('api_key="unused"', 'api_key="anything"')
        .replace('model="builtin:gemma3-270m"', f"model={str(tiny_model_dir)!r}")
    )
    assert changed.count("\n") == script.count("\n") and changed != script
    ran = subprocess.run(
        [sys.executable, "-c", changed], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr
    printed = ran.stdout.splitlines()
    assert printed[0] == "The job has successfully completed", ran.stdout
    assert printed[1].startswith("New fine-tuned model created: medical-zh-"), ran.stdout

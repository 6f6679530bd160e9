"""Learning rate and epochs chosen by the base model's size (training/defaults.py)."""

import json

from core import texts
from training import defaults
from training.config import TrainConfig
from training.defaults import BY_SIZE, SIZE_CLASSES, recommend
from training.jobs import lifecycle

SMALL, LARGE = SIZE_CLASSES


def test_models_under_a_billion_parameters_get_the_measured_defaults_and_larger_ones_the_tutorials():
    for parameters in (135e6, 268e6, 0.99e9):
        chosen = recommend(parameters)
        assert (chosen.lr, chosen.epochs) == (SMALL.lr, SMALL.epochs)
    for parameters in (1e9, 2.1e9, 3.2e9, 70e9, None):
        chosen = recommend(parameters)
        assert (chosen.lr, chosen.epochs) == (1e-4, 3.0), "the tutorials' settings for 2-3B models"
    assert SMALL.lr > LARGE.lr


def test_the_reason_names_the_size_the_values_and_the_measurement():
    with texts.in_language("en"):
        small = recommend(268e6).reason()
        assert "0.27B parameters" in small and f"learning rate {SMALL.lr:g}" in small
        assert "bench/training_defaults.py" in small and "@" not in small
        assert "size unknown until downloaded" in recommend(None).reason()
    with texts.in_language("zh"):
        assert "0.27B 参数" in recommend(268e6).reason()


def test_the_size_is_read_from_safetensors_headers(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert defaults.parameter_count(tiny_model_dir) == model.num_parameters()
    assert defaults.parameter_count(tmp_path) is None
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00")
    assert defaults.parameter_count(tmp_path) is None, "a broken file is no size, not a crash"


def test_known_sizes_before_download():
    assert defaults.known_parameters("builtin:gemma3-270m") == 268e6
    assert defaults.known_parameters("modelscope:LLM-Research/Llama-3.2-3B-Instruct") > 1e9
    assert defaults.known_parameters("modelscope:someone/unknown") is None
    assert defaults.known_parameters("not a model id !") is None


def test_the_trainer_default_is_by_size_and_the_job_records_the_numbers(home, db, tiny_model_dir):
    assert TrainConfig().lr == BY_SIZE and TrainConfig().epochs == BY_SIZE
    request = TrainConfig(base=str(tiny_model_dir), data=str(lifecycle.SAMPLES["translator"]), name="sized")
    plan = lifecycle.check_request(db, request)
    assert (plan.config.lr, plan.config.epochs) == (SMALL.lr, SMALL.epochs), "a tiny model is small"
    assert plan.by_size is not None and plan.by_size.parameters < 1e7
    given = lifecycle.check_request(db, TrainConfig(**{**request.as_dict(), "lr": 3e-4, "epochs": 1.0}))
    assert (given.config.lr, given.config.epochs) == (3e-4, 1.0) and given.by_size is None
    half = lifecycle.check_request(db, TrainConfig(**{**request.as_dict(), "lr": 3e-4}))
    assert (half.config.lr, half.config.epochs) == (3e-4, SMALL.epochs)
    assert json.loads(json.dumps(plan.job_fields()["config"]))["lr"] == SMALL.lr


def test_the_training_page_shows_each_bases_defaults_with_the_reason(home, tiny_model_dir, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import use_running_server_navigation
    from tests.test_pages import ENTRY

    monkeypatch.setenv("TRANSLATOR_BASE_MODEL", str(tiny_model_dir))
    use_running_server_navigation(monkeypatch)
    with texts.in_language("en"):
        app = AppTest.from_file(ENTRY, default_timeout=120)
        app.run()
        app.switch_page("pages/train.py").run()
        assert not app.exception, app.exception
        base = app.selectbox(key="train-base").value
        assert app.number_input(key=f"setting-lr-{base}").value == SMALL.lr
        assert any("Defaults by model size" in c.value and "0.00B" in c.value for c in app.caption)
        llama = "modelscope:LLM-Research/Llama-3.2-3B-Instruct"
        app.selectbox(key="train-base").set_value(llama).run()
        assert app.number_input(key=f"setting-lr-{llama}").value == 1e-4
        assert app.number_input(key=f"setting-epochs-{llama}").value == 3.0
        assert any("3.21B parameters" in c.value for c in app.caption)

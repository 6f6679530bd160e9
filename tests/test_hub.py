"""Pushing to the Hugging Face Hub, checked at the HTTP boundary: the hub client's transport is
faked, and the exact requests (repository settings, files, card) are asserted."""

import base64
import json
import time

import httpx2
import huggingface_hub
import pytest

from core.errors import UserError
from engine import download
from serving import hub
from tests.conftest import make_adapter, register_adapter


class FakeHub:
    """Answers the Hub's endpoints as huggingface.co does, and keeps what it was sent."""

    def __init__(self):
        self.created, self.commits, self.seen = [], [], []

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        self.seen.append((request.method, path, request.headers.get("authorization")))
        if path == "/api/repos/create":
            self.created.append(json.loads(request.content))
            return httpx2.Response(
                200, json={"url": "https://huggingface.co/you/med-zh-1", "name": "you/med-zh-1"}
            )
        if path == "/api/validate-yaml":  # the Hub checks a model card's front matter
            return httpx2.Response(200, json={"errors": [], "warnings": []})
        if path.endswith("/preupload/main"):
            files = json.loads(request.content)["files"]
            modes = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return httpx2.Response(200, json={"files": modes})
        if path.endswith("/commit/main"):
            self.commits.append([json.loads(line) for line in request.content.decode().splitlines()])
            return httpx2.Response(
                200, json={"commitUrl": "https://huggingface.co/you/med-zh-1/commit/1", "commitOid": "1" * 40}
            )
        return httpx2.Response(404, json={"error": f"unexpected {request.method} {path}"})

    def files(self) -> dict[str, bytes]:
        operations = [op for commit in self.commits for op in commit if op["key"] == "file"]
        return {op["value"]["path"]: base64.b64decode(op["value"]["content"]) for op in operations}


@pytest.fixture
def fake_hub(monkeypatch):
    fake = FakeHub()
    huggingface_hub.set_client_factory(lambda: httpx2.Client(transport=httpx2.MockTransport(fake)))
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    monkeypatch.setattr(download, "_reachable", lambda host: True)  # the probe, not the transport
    yield fake
    huggingface_hub.set_client_factory(httpx2.Client)


@pytest.fixture
def adapter(db, home, builtin_dir):
    folder = make_adapter(builtin_dir, home / "adapters" / "med-zh-1", seed=1)
    return register_adapter(db, "med-zh-1", folder, "builtin", role="translator")


def test_an_adapter_is_pushed_private_with_its_files_and_card(db, adapter, fake_hub, home):
    url = hub.push(db, "med-zh-1", repo="you/med-zh-1")
    assert url == "https://huggingface.co/you/med-zh-1"
    assert fake_hub.created == [
        {"name": "med-zh-1", "organization": "you", "visibility": "private", "type": "model"}
    ]
    files = fake_hub.files()
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    folder = home / "adapters" / "med-zh-1"
    assert files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    card = files["README.md"].decode()
    assert "library_name: peft" in card and "base_model: builtin" in card and "license: apache-2.0" in card
    writes = {auth for _, path, auth in fake_hub.seen if "/commit/" in path or path == "/api/repos/create"}
    assert writes == {"Bearer hf_secret_token"}
    assert "hf_secret_token" not in (home / "registry.db").read_bytes().decode("latin-1")


def test_public_when_asked(db, adapter, fake_hub):
    hub.push(db, "med-zh-1", repo="you/med-zh-1", private=False)
    assert fake_hub.created[0]["visibility"] == "public"


def test_bad_pushes_get_one_clear_message(db, adapter, monkeypatch):
    with pytest.raises(UserError, match="owner/name"):
        hub.push(db, "med-zh-1", repo="no-owner")
    with pytest.raises(UserError, match="Unknown hub"):
        hub.push(db, "med-zh-1", repo="you/x", hub="gitlab")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: None)
    with pytest.raises(UserError, match="HF_TOKEN"):
        hub.push(db, "med-zh-1", repo="you/x")
    monkeypatch.setenv("HF_TOKEN", "t")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    started = time.time()
    with pytest.raises(UserError, match="offline"):
        hub.push(db, "med-zh-1", repo="you/x")
    assert time.time() - started < 10

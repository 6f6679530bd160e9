"""Pushing to the Hugging Face Hub and to ModelScope, checked at the HTTP boundary: each hub
client's transport is faked (httpx for Hugging Face, requests for ModelScope), and the exact requests
(repository settings, files, card, token) are asserted."""

import base64
import json
import re
import time
from urllib.parse import urlparse

import httpx2
import huggingface_hub
import pytest
import requests

from core.errors import UserError
from engine import download
from exporters import hub
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
    pushed = hub.push(db, "med-zh-1", repo="you/med-zh-1")
    assert pushed.url == "https://huggingface.co/you/med-zh-1" and pushed.note is None
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


class FakeModelScope:
    """Answers ModelScope's endpoints as modelscope.cn does (repository creation, the LFS batch
    and blob upload, the commit), and keeps what it was sent. Installed as requests' transport."""

    def __init__(self):
        self.repos, self.blobs, self.commits, self.seen = {}, {}, [], []
        self.refuse = None  # (status, message) for every request, to play a refusing hub

    def send(self, request) -> requests.Response:
        body = request.body
        if hasattr(body, "read"):
            body = body.read()
        elif body is not None and not isinstance(body, bytes | str):
            body = b"".join(body)
        body = body.encode() if isinstance(body, str) else body
        path = urlparse(request.url).path
        self.seen.append((request.method, path, request.headers.get("Authorization")))
        status, answer = self.refuse or self.answer(request.method, path, body)
        if isinstance(answer, str):
            answer = {"Code": status, "Message": answer, "Success": False}
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response._content = json.dumps(answer).encode()
        response.headers["Content-Type"] = "application/json"
        return response

    def answer(self, method: str, path: str, body: bytes) -> tuple[int, dict | str]:
        if method == "POST" and path == "/api/v1/models":
            settings = json.loads(body)
            repo = f"{settings['Path']}/{settings['Name']}"
            if repo in self.repos:
                return 409, "repo already exists"
            self.repos[repo] = settings
            return 200, {"Code": 200, "Data": {"Path": repo}, "Success": True}
        if method == "POST" and re.fullmatch(r"/api/v1/repos/models/.+/info/lfs/objects/batch", path):
            missing = [o for o in json.loads(body)["objects"] if o["oid"] not in self.blobs]
            href = "https://www.modelscope.cn/lfs-upload/{}"
            objects = [{**o, "actions": {"upload": {"href": href.format(o["oid"])}}} for o in missing]
            return 200, {"Code": 200, "Data": {"objects": objects}, "Success": True}
        upload = re.fullmatch(r"/lfs-upload/(\w+)", path)
        if method == "PUT" and upload:
            self.blobs[upload.group(1)] = body
            return 200, {"Code": 200, "Success": True}
        commit = re.fullmatch(r"/api/v1/repos/models/(.+)/commit/master", path)
        if method == "POST" and commit and commit.group(1) in self.repos:
            self.commits.append(json.loads(body))
            return 200, {"Code": 200, "Data": {"CommitId": "1" * 40}, "Success": True}
        return 404, f"unexpected {method} {path}"

    def files(self) -> dict[str, bytes]:
        """Each committed file's bytes: inline ones decoded, LFS ones from the uploaded blob."""
        found = {}
        for commit in self.commits:
            for action in commit["actions"]:
                if action.get("type") == "lfs":
                    found[action["path"]] = self.blobs[action["sha256"]]
                else:
                    found[action["path"]] = base64.b64decode(action["content"])
        return found


@pytest.fixture
def fake_modelscope(monkeypatch):
    from requests.adapters import HTTPAdapter

    fake = FakeModelScope()
    monkeypatch.setattr(HTTPAdapter, "send", lambda _adapter, request, **_: fake.send(request))
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "ms_secret_token")
    monkeypatch.setattr(download, "_reachable", lambda host: True)  # the probe, not the transport
    return fake


def test_an_adapter_is_pushed_to_modelscope_private_with_its_files_and_card(
    db, adapter, fake_modelscope, home
):
    pushed = hub.push(db, "med-zh-1", repo="you/med-zh-1", hub="modelscope")
    assert pushed.url == "https://www.modelscope.cn/models/you/med-zh-1"
    # the upload's own "create if missing" (public) finds it there: it stays private
    assert fake_modelscope.repos["you/med-zh-1"]["Visibility"] == 1 and len(fake_modelscope.repos) == 1
    files = fake_modelscope.files()
    assert sorted(files) == ["README.md", "adapter_config.json", "adapter_model.safetensors"]
    folder = home / "adapters" / "med-zh-1"
    assert files["adapter_model.safetensors"] == (folder / "adapter_model.safetensors").read_bytes()
    assert files["adapter_config.json"] == (folder / "adapter_config.json").read_bytes()
    assert "library_name: peft" in files["README.md"].decode()
    assert {auth for *_, auth in fake_modelscope.seen} == {"Bearer ms_secret_token"}
    assert "ms_secret_token" not in (home / "registry.db").read_bytes().decode("latin-1")


@pytest.mark.parametrize(
    "base_model, listed_as, terms_file",
    [
        ("builtin", "apache-2.0", None),
        pytest.param("builtin:gemma3-270m", "Other", "GEMMA_TERMS.html", marks=pytest.mark.slow),
    ],
)
def test_a_modelscope_repository_gets_the_bases_licence_where_modelscope_lists_it_else_other_and_a_note(
    db, home, fake_modelscope, request, base_model, listed_as, terms_file
):
    model_dir = request.getfixturevalue("builtin_dir" if base_model == "builtin" else "gemma_dir")
    folder = make_adapter(model_dir, home / "adapters" / "mine", seed=1)
    prompt_format = None if base_model == "builtin" else "plain"  # Gemma-3-270m's built-in format
    register_adapter(db, "mine", folder, base_model, role="translator", prompt_format=prompt_format)
    pushed = hub.push(db, "mine", repo="you/mine", hub="modelscope")
    assert fake_modelscope.repos["you/mine"]["License"] == listed_as  # not the client's "Apache-2.0"
    card = fake_modelscope.files()["README.md"].decode()
    if terms_file is None:
        assert pushed.note is None and "license: apache-2.0" in card
    else:
        assert "Other" in str(pushed.note) and "Gemma Terms of Use" in str(pushed.note)
        assert f"Gemma Terms of Use ({terms_file}, copied next to this card)" in card
        assert terms_file in fake_modelscope.files()  # as the card says


def test_modelscope_public_when_asked_and_a_refusal_is_one_line(db, adapter, fake_modelscope):
    hub.push(db, "med-zh-1", repo="you/open", hub="modelscope", private=False)
    assert fake_modelscope.repos["you/open"]["Visibility"] == 5
    fake_modelscope.refuse = (403, "token has no write access to you")
    with pytest.raises(UserError, match="ModelScope refused the push") as refused:
        hub.push(db, "med-zh-1", repo="you/other", hub="modelscope")
    assert "\n" not in str(refused.value) and "you/other" not in fake_modelscope.repos


def test_modelscope_without_a_token_or_offline_is_refused_within_seconds(db, adapter, monkeypatch):
    monkeypatch.delenv("MODELSCOPE_API_TOKEN", raising=False)
    with pytest.raises(UserError, match="MODELSCOPE_API_TOKEN"):
        hub.push(db, "med-zh-1", repo="you/x", hub="modelscope")
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "t")
    monkeypatch.setenv("MODELSCOPE_DOMAIN", "hub.invalid")
    started = time.time()
    with pytest.raises(UserError, match="offline"):
        hub.push(db, "med-zh-1", repo="you/x", hub="modelscope")
    assert time.time() - started < 10

"""Our GGUF exports run by llama.cpp itself: its Python bindings, built from the pinned archive that
the converters come from (exporters/llama_cpp.py; `./setup.sh --dev` builds them once).

Each built-in model gets adapters of the LoRA shapes the studio trains (ranks 4 to 64, two to all
seven projections) in each prompt format it is used with. For every role, prompts built by our own
prompt module are answered greedily, 32 new tokens, by our engine (the adapter unmerged, fp32) and
by llama.cpp (the merged GGUF; the GGUF LoRA on the base GGUF), from the same token ids. The
exports and our engine's tokens are made once per session (tests/gguf_exports.py, through the
fixtures in tests/conftest.py) and shared with the llama.cpp server's browser test."""

from dataclasses import replace
from pathlib import Path

import pytest

from core.errors import UserError
from engine import formats
from engine.roles import PERSONA, TRANSLATOR
from exporters import gguf as gguf_export
from exporters import llama_cpp as converters
from exporters import ollama
from tests.conftest import THREADS
from tests.gguf_exports import NEW_TOKENS, SHAPES, Exported, base_gguf

llama_cpp = pytest.importorskip(
    "llama_cpp", reason="llama.cpp's Python bindings are not installed: ./setup.sh --dev builds them"
)

pytestmark = pytest.mark.slow

# Two implementations of the same f32 model sum in different orders: where our two best next
# tokens are closer than this (logits), either may win. Everything before such a tie must match.
TIE = 0.05
# the shares of prompts whose first 32 greedy tokens agree with our engine under llama.cpp's
# default f16 attention cache (SmolLM2, chat_template, r 4 on q and v): on the 16 prompts asked now,
# measured 2026-12-06, f32 16/16, f16 15/16, q8_0 7/16 (on 40 prompts, 2026-12-04: 40/40, 37/40,
# 15/40); the floors sit a prompt or two below
FLOORS = {"f32+f16-cache": 0.9, "f16": 0.85, "q8_0": 0.3}
# f32 ties measured on 40 prompts: none for either SmolLM2 adapter, 5 for Gemma (margins
# 0.004-0.018); a share of the prompts asked may tie
TIE_SHARE = 0.15


@pytest.fixture(scope="module", autouse=True)
def studio_home(gguf_studio):
    """The exports' home is TRANSLATOR_HOME while this module runs, as for a user exporting."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSLATOR_HOME", str(gguf_studio[1]))
        yield gguf_studio


@pytest.fixture(scope="module", params=list(SHAPES))
def exported(request, gguf_studio):
    if request.param == "smollm2-chat":  # the session's, shared with the server's browser test
        return request.getfixturevalue("smollm2_chat_export")
    return Exported(*gguf_studio, request.param)


@pytest.fixture(scope="module")
def reference(exported):
    """Our engine's greedy tokens for every prompt: (role, text, prompt ids, tokens)."""
    return exported.reference


def _most_ties(reference) -> int:
    return max(1, round(TIE_SHARE * len(reference)))


def _same_or_tied(exported, ids: list[int], ours: list[int], theirs: list[int]) -> float | None:
    """None when the tokens are the same; else our margin between the two best tokens where they
    part, which must be a tie (< TIE): a wrong export parts at a clear choice."""
    if ours == theirs:
        return None
    at = next(i for i, (a, b) in enumerate(zip([*ours, -1], [*theirs, -1], strict=False)) if a != b)
    best, second = exported.engine.next_token_logits(ids + ours[:at], exported.adapter).topk(2).values
    margin = float(best - second)
    assert margin < TIE, f"parted at token {at} where ours led by {margin:.3f} logits"
    return margin


def _llama(path: Path, lora: Path | None = None, f16_cache: bool = False):
    """llama.cpp on our file; its attention cache in f32 as our engine keeps it, or in llama.cpp's
    default f16 (`f16_cache`), which moves logits by about 1e-3 and so flips near-ties."""
    cache = llama_cpp.GGML_TYPE_F16 if f16_cache else llama_cpp.GGML_TYPE_F32
    return llama_cpp.Llama(
        model_path=str(path),
        lora_path=str(lora) if lora else None,
        n_ctx=1024,
        n_threads=THREADS,
        n_threads_batch=THREADS,
        seed=0,
        type_k=cache,
        type_v=cache,
        verbose=False,
    )


def _llama_tokens(llm, ids: list[int], stops: set[int]) -> list[int]:
    llm.reset()
    tokens: list[int] = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
        if token in stops or len(tokens) >= NEW_TOKENS:
            break
        tokens.append(token)
    return tokens


class Answers:
    """llama.cpp on one export's files, each loaded once, and its greedy tokens for each prompt
    computed once: the merged file's answers are compared with our engine, then with the GGUF
    LoRA's and with the README's prompt, which must tokenise to the same ids."""

    def __init__(self, exported: Exported):
        self.stops = exported.stops()
        self._loaded: dict[tuple, object] = {}
        self._tokens: dict[tuple, list[int]] = {}

    def llama(self, path: Path, lora: Path | None = None, f16_cache: bool = False):
        key = (path, lora, f16_cache)
        if key not in self._loaded:
            self._loaded[key] = _llama(path, lora, f16_cache)
        return self._loaded[key]

    def tokens(
        self, ids: list[int], path: Path, lora: Path | None = None, f16_cache: bool = False
    ) -> list[int]:
        key = (path, lora, f16_cache, tuple(ids))
        if key not in self._tokens:
            self._tokens[key] = _llama_tokens(self.llama(path, lora, f16_cache), ids, self.stops)
        return self._tokens[key]


@pytest.fixture(scope="module")
def answers(exported):
    return Answers(exported)


def test_the_merged_f32_gguf_gives_our_engines_greedy_tokens_for_every_prompt(exported, reference, answers):
    merged = exported.merged("f32")
    ties = [
        margin
        for _, _, ids, tokens in reference
        if (margin := _same_or_tied(exported, ids, tokens, answers.tokens(ids, merged))) is not None
    ]
    print(f"{exported.name}: {len(reference) - len(ties)}/{len(reference)} identical, ties at {ties}")
    assert len(reference) == 2 * exported.per_role
    assert len(ties) <= _most_ties(reference)


def test_llama_cpp_tokenises_our_prompt_text_into_our_prompt_ids(exported, answers):
    """What Ollama and llama.cpp's own tools do with the exported template: text in, tokens out."""
    llm = answers.llama(exported.merged("f32"))
    for role, text, ids in exported.prompts():
        prompt = formats.prompt_text(exported.engine.tokenizer, exported.prompt_format, role, text)
        assert llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True) == ids, text


def test_the_gguf_lora_on_the_base_gguf_gives_the_merged_ggufs_tokens(exported, reference, answers):
    base, lora = exported.lora()
    merged = exported.merged("f32")
    ties = 0
    for _, _, ids, tokens in reference:
        got = answers.tokens(ids, base, lora)
        if got != answers.tokens(ids, merged):
            ties += 1
            _same_or_tied(exported, ids, tokens, got)
    assert ties <= _most_ties(reference)
    assert any(answers.tokens(ids, base) != tokens for _, _, ids, tokens in reference), (
        "the adapter changed no answer: the LoRA check shows nothing"
    )


def test_the_ggufs_chat_template_formats_a_conversation_as_our_prompt(exported):
    """llama.cpp's chat completion renders the GGUF's template; the text it tokenises must be ours,
    for one message and for a conversation with history."""
    if exported.prompt_format != "chat_template":
        pytest.skip("this export's format has no chat template: the Modelfile test covers it")
    assert "/v1/chat/completions" in gguf_export.readme_path(exported.merged("f32")).read_text(
        encoding="utf-8"
    )
    llm = _llama(exported.merged("f32"))
    seen = []
    tokenize = llm.tokenize

    def recording(text: bytes, add_bos: bool = True, special: bool = False):
        ids = tokenize(text, add_bos=add_bos, special=special)
        seen.append((text.decode("utf-8"), ids))
        return ids

    llm.tokenize = recording
    role = replace(PERSONA, uses_history=True)
    history = [("你是谁？", "我是甄嬛。"), ("皇上驾到！", "臣妾恭迎皇上。")]
    for turns in ((), history):
        messages = [{"role": "system", "content": role.system_prompt}]
        for question, answer in turns:
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": "今天天气真好。"})
        seen.clear()
        llm.create_chat_completion(messages=messages, max_tokens=1, temperature=0.0)
        ours = formats.prompt_text(exported.engine.tokenizer, "chat_template", role, "今天天气真好。", turns)
        text, ids = seen[0]
        assert text == ours
        ours_ids = formats.prompt_ids(
            exported.engine.tokenizer, "chat_template", role, "今天天气真好。", turns
        )
        assert ids == ours_ids


def test_a_plain_export_called_as_its_readme_and_modelfile_say_answers_as_our_engine(
    exported, reference, answers
):
    """No chat template in the file: the README's prompt and the Modelfile's TEMPLATE (Ollama fills
    it) are how to call it; rendered with the role's system prompt and the text, then tokenised by
    llama.cpp."""
    if exported.prompt_format != "plain":
        pytest.skip("this export carries a chat template: the chat template test covers it")
    path = exported.merged("f32")
    modelfile = gguf_export.modelfile_path(path).read_text(encoding="utf-8")
    template = modelfile.split('TEMPLATE """', 1)[1].split('"""', 1)[0]
    system = modelfile.split('SYSTEM """', 1)[1].split('"""', 1)[0] if 'SYSTEM """' in modelfile else ""
    assert system == TRANSLATOR.system_prompt  # the adapter's role
    readme = gguf_export.readme_path(path).read_text(encoding="utf-8")
    assert "has no chat template in the file" in readme and f"--model {path.name}" in readme
    written = readme.split("```text\n", 1)[1].split("\n```", 1)[0]
    llm = answers.llama(path)
    for role, text, ours_ids, tokens in reference:
        if role is not TRANSLATOR:
            continue
        prompt = ollama.render(template, system=system, prompt=text)
        assert written.replace(gguf_export.TEXT_MARK, text) == prompt, (
            "the README's prompt is the Modelfile's"
        )
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=True)
        assert ids == ours_ids, text
        _same_or_tied(exported, ids, tokens, answers.tokens(ids, path))


@pytest.mark.parametrize("outtype", ["f32+f16-cache", "f16", "q8_0"])
def test_llama_cpp_defaults_and_smaller_types_agree_with_us_on_at_least_the_measured_share(
    exported, reference, answers, outtype
):
    """What a user running llama.cpp with its defaults (an f16 attention cache) gets, from the f32
    file and from the smaller types."""
    if exported.name != "smollm2-chat":
        pytest.skip("measured on one adapter (SmolLM2, chat_template)")
    path = exported.merged(outtype.split("+")[0])
    agree = sum(answers.tokens(ids, path, f16_cache=True) == tokens for _, _, ids, tokens in reference)
    print(f"{outtype}: {agree}/{len(reference)} prompts agree on their first {NEW_TOKENS} tokens")
    assert agree / len(reference) >= FLOORS[outtype]


def test_an_export_llama_cpp_cannot_load_is_removed_with_a_message_naming_what_to_change(
    exported, tmp_path, monkeypatch
):
    if exported.name != "smollm2-chat":
        pytest.skip("one adapter shows it")
    with exported.merged("f32").open("rb") as whole:
        head = whole.read(1_000_000)
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(head)
    with pytest.raises(UserError) as caught:
        converters.check_loads(broken)
    message = str(caught.value)
    assert "broken.gguf" in message and "f16" in message and "Traceback" not in message

    def truncating(out: Path, script: str, *args: str) -> None:
        out.write_bytes(head)

    monkeypatch.setattr(gguf_export, "_convert", truncating)
    out = exported.out / "truncated.gguf"
    with pytest.raises(UserError, match="truncated.gguf"):
        gguf_export.export_merged(exported.db, exported.name, out, outtype="f32")
    assert not out.exists() and not gguf_export.modelfile_path(out).exists()


def test_a_lora_given_a_base_of_another_shape_is_refused_and_removed(exported, tiny_model_dir):
    """The LoRA export is loaded on the base GGUF the user names: a base it does not fit (here a
    tiny model with SmolLM2's vocabulary and 64-wide layers) is a message, and no LoRA file stays."""
    if exported.name != "smollm2-chat":
        pytest.skip("one adapter shows it")
    wrong_base = base_gguf(tiny_model_dir, exported.out)
    out = exported.out / "on-the-wrong-base-lora.gguf"
    with pytest.raises(UserError) as caught:
        gguf_export.export_lora(exported.db, exported.name, out, base_gguf=str(wrong_base))
    message = str(caught.value)
    assert out.name in message and "incorrect shape" in message and "Traceback" not in message
    assert not out.exists() and not gguf_export.modelfile_path(out).exists()
    assert not gguf_export.readme_path(out).exists()

"""A model served elsewhere behind an OpenAI-compatible API (our server, vLLM, Ollama, ...), used
by the chat page exactly as a local engine: the same roles, history, decoding and saved messages."""

from collections.abc import Iterator, Sequence

from core.errors import UserError
from engine.roles import Decoding, Role

CONNECT_SECONDS = 5  # an address nobody answers fails in seconds, not at the end of a long timeout
DEFAULT_URL = "http://127.0.0.1:8000/v1"
PENALTY_FIELDS = ("repetition_penalty", "repeat_penalty")


def _client(url: str, api_key: str):
    import openai

    timeout = openai.Timeout(600, connect=CONNECT_SECONDS)
    return openai.OpenAI(base_url=url.rstrip("/"), api_key=api_key or "none", max_retries=0, timeout=timeout)


def _explained(url: str, error) -> UserError:
    import openai

    if isinstance(error, openai.AuthenticationError):
        return UserError("ERR_REMOTE_KEY", url=url)
    if isinstance(error, openai.APIStatusError):
        return UserError("ERR_REMOTE_SAID", url=url, status=error.status_code, message=error.message)
    return UserError("ERR_REMOTE_UNREACHABLE", url=url, error=error)


def list_models(url: str, api_key: str = "") -> list[str]:
    import openai

    if not url.startswith(("http://", "https://")):
        raise UserError("ERR_REMOTE_URL", url=url)
    try:
        return [model.id for model in _client(url, api_key).models.list()]
    except openai.OpenAIError as error:
        raise _explained(url, error) from error


class RemoteEngine:
    """Answers through `POST /chat/completions` with streaming; stands in for a `ChatEngine`."""

    device, dtype = "remote", "remote"

    def __init__(self, url: str, model: str, api_key: str = ""):
        self.url, self.model, self._client = url, model, _client(url, api_key)

    @property
    def base_model_id(self) -> str:
        return f"{self.model} @ {self.url}"

    def stream(
        self,
        text: str,
        *,
        role: Role,
        adapter: dict | None = None,
        history: Sequence[tuple[str, str]] = (),
        decoding: Decoding | None = None,
    ) -> Iterator[str]:
        import openai

        decoding = decoding or role.decoding
        messages = [{"role": "system", "content": role.system_prompt}] if role.system_prompt else []
        for question, answer in history if role.uses_history else ():
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        messages.append({"role": "user", "content": text})
        settings = {"max_tokens": decoding.max_new_tokens}
        settings |= (
            {"temperature": decoding.temperature, "top_p": decoding.top_p} if decoding.do_sample else {}
        )
        settings |= {} if decoding.do_sample else {"temperature": 0}
        # vLLM and our server read `repetition_penalty`, llama.cpp's server `repeat_penalty` (its default
        # is 1.1, so 1.0 is sent too); a server that refuses fields it does not know is asked again
        # without them.
        penalty = {name: decoding.repetition_penalty for name in PENALTY_FIELDS}
        try:
            try:
                chunks = self._ask(messages, settings, penalty)
            except openai.BadRequestError as error:
                if not any(name in str(error.message) for name in PENALTY_FIELDS):
                    raise
                chunks = self._ask(messages, settings, None)
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except openai.OpenAIError as error:
            raise _explained(self.url, error) from error

    def _ask(self, messages: list[dict], settings: dict, extra: dict | None):
        return self._client.chat.completions.create(
            model=self.model, messages=messages, stream=True, extra_body=extra, **settings
        )

"""A chat turn with its record: the user's message, the streamed reply, and what produced it.

The reply is stored with the adapter, role and generation settings that made it, also when the
reader stops early (a closed tab), marked as partial.
"""

from collections.abc import Iterator

from core import texts
from core.errors import UserError
from engine.catalogue import BUILTIN_MODELS
from engine.generation import ChatEngine
from engine.roles import Decoding, Role
from registry import conversations
from registry.adapters import Adapter
from studio.roles import get_role

TITLE_LENGTH = 24


ROLE_GROUP_ORDER = {"translator": 0, "persona": 1}  # then custom roles


def adapters_for_base(adapters: list[Adapter], base_model: str) -> list[Adapter]:
    """The adapters chat can use on this base: translators first, then personas, then custom."""
    usable = [a for a in adapters if a.base_model == base_model]
    return sorted(usable, key=lambda a: (ROLE_GROUP_ORDER.get(a.role, 2), a.name))


def base_choices(default_base: str, adapters: list[dict]) -> list[str]:
    """The bases the sidebar offers: the configured default, the built-in models (Chinese first), then
    every base an adapter was trained on, each once."""
    return list(dict.fromkeys([default_base, *BUILTIN_MODELS, *(a.base_model for a in adapters)]))


def adapter_from_link(
    requested: str, adapters: list[Adapter], already_followed: str | None
) -> Adapter | None:
    """The adapter a link such as ?adapter=NAME asks for, the first time the session sees it; after
    that the sidebar is the user's (the URL then follows the sidebar, so a reload keeps the choice)."""
    if not requested or requested == already_followed:
        return None
    return next((a for a in adapters if a.name == requested), None)


def conversation_to_open(open_now: int | None, first_visit: bool, linked: str, ids: list[int]) -> int | None:
    """Which conversation a session shows: the one it has open (None: a new one, not saved yet),
    else, on its first visit or when its conversation was deleted, the one its link names (a reload
    keeps ?c=), else a new one of its own: never the newest conversation of whoever used the app last."""
    if not first_visit and (open_now is None or open_now in ids):
        return open_now
    return int(linked) if linked.isdigit() and int(linked) in ids else None


def answering_role(db, adapter: Adapter | None, chosen_role: Role) -> Role:
    """An adapter answers in its own role (when that role still exists); the base model in the role
    chosen in the sidebar."""
    if adapter is None:
        return chosen_role
    try:
        return get_role(db, adapter.role)
    except UserError:
        return chosen_role


def adapter_label(name: str, usable: list[dict]) -> str:
    """How the sidebar lists an adapter: its role's group, then its name ("" is the base alone)."""
    if name == "":
        return texts.ADAPTER_CHOICE.format(group=texts.GROUPS["base"], name=texts.BASE_ONLY)
    role = next(a.role for a in usable if a.name == name)
    return texts.ADAPTER_CHOICE.format(group=texts.GROUPS.get(role, texts.GROUPS["custom"]), name=name)


def history_pairs(messages: list[dict]) -> list[tuple[str, str]]:
    """(user, assistant) pairs of complete exchanges, oldest first."""
    pairs, question = [], None
    for message in messages:
        if message["role"] == "user":
            question = message["content"]
        elif message["role"] == "assistant" and question is not None:
            pairs.append((question, message["content"]))
            question = None
    return pairs


def title_from(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= TITLE_LENGTH else text[: TITLE_LENGTH - 1] + "…"


def respond(
    db,
    engine: ChatEngine,
    conversation_id: int,
    text: str,
    *,
    role: Role,
    adapter: Adapter | None,
    decoding: Decoding,
) -> Iterator[str]:
    """Store the user's message, stream the reply, then store the reply with its provenance."""
    history = history_pairs(conversations.messages(db, conversation_id))
    if not history and conversations.get(db, conversation_id)["title"] == conversations.DEFAULT_TITLE:
        conversations.update(db, conversation_id, title=title_from(text))
    conversations.add_message(db, conversation_id, "user", text)
    conversations.update(
        db,
        conversation_id,
        base_model=engine.base_model_id,
        adapter=adapter.name if adapter else "",
        role=role.name,
    )
    pieces, finished = [], False
    try:
        for piece in engine.stream(text, role=role, adapter=adapter, history=history, decoding=decoding):
            pieces.append(piece)
            yield piece
        finished = True
    finally:
        if pieces or finished:
            settings = decoding.as_dict() | ({} if finished else {"partial": True})
            conversations.add_message(
                db,
                conversation_id,
                "assistant",
                "".join(pieces).strip(),
                base_model=engine.base_model_id,
                adapter=adapter.name if adapter else "",
                chat_role=role.name,
                settings=settings,
            )


def provenance(message: dict) -> str:
    """One line saying which model, adapter, role and settings produced a reply."""
    settings = message.get("settings") or {}
    parts = [message.get("adapter") or texts.PROVENANCE_BASE, message.get("chat_role") or ""]
    if settings.get("do_sample"):
        parts.append(
            f"T={settings.get('temperature')} top_p={settings.get('top_p')} "
            f"rep={settings.get('repetition_penalty')}"
        )
    elif settings:
        beams, samples = settings.get("num_beams") or 1, settings.get("mbr_samples") or 0
        how = texts.PROVENANCE_GREEDY
        if samples > 1:
            how = texts.PROVENANCE_MBR.format(samples=samples)
        elif beams > 1:
            how = texts.PROVENANCE_BEAMS.format(beams=beams)
        parts.append(f"{how} rep={settings.get('repetition_penalty')}")
    if settings.get("max_new_tokens"):
        parts.append(texts.PROVENANCE_MAX.format(count=settings["max_new_tokens"]))
    if settings.get("partial"):
        parts.append(texts.PROVENANCE_PARTIAL)
    return " · ".join(part for part in parts if part)

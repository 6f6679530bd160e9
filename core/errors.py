"""The one exception type whose message is meant for the person using the product."""

from core import texts
from core.texts import Message


class UserError(Exception):
    """Bad input or an unavailable resource; the message says what is wrong and what to do.

    `UserError("ERR_NAME", field=value)` carries the text's name and its fields (`.message`) and
    reads in the language of whoever turns it into text, wherever and whenever that happens; a row
    that keeps it keeps the code and the fields. A plain sentence (`UserError("...")`, from a library
    or composed) stays as written."""

    def __init__(self, text: "str | Message", /, **fields):
        if isinstance(text, Message):
            self.message = text
        elif texts.known(text):
            self.message = Message(text, fields)
        elif fields:
            raise ValueError(f"{text!r} is not a text of core.texts, so its fields have nowhere to go")
        else:
            self.message = None
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.message) if self.message is not None else super().__str__()

    def __reduce__(self):  # across processes (multiprocessing, torch.distributed) with its fields
        return (_rebuilt, (type(self), self.message or self.args[0], dict(self.__dict__)))


def _rebuilt(kind: type, text, state: dict) -> UserError:
    error = kind.__new__(kind)
    UserError.__init__(error, text)
    error.__dict__.update(state)
    return error


def message_of(error: BaseException) -> "Message | str":
    """What a row keeps of an error: its message with code and fields where it has one, else the
    first line of its text."""
    message = getattr(error, "message", None)
    return message if isinstance(message, Message) else first_line(error)


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what a card or a row shows."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

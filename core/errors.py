"""The one exception type whose message is meant for the person using the product."""


class UserError(Exception):
    """Bad input or an unavailable resource; the message says what is wrong and what to do."""


def first_line(error: BaseException) -> str:
    """The first line of an error's message (its type when it has none): what a card or a row shows."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

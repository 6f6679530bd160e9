"""The one exception type whose message is meant for the person using the product."""


class UserError(Exception):
    """Bad input or an unavailable resource; the message says what is wrong and what to do."""

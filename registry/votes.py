"""Rows of `votes`: blind A/B judgements between two answers to one prompt."""

from dataclasses import dataclass

from sqlite_utils import Database

from registry.db import from_json, now, to_json

WINNERS = ("first", "second", "tie")


@dataclass(frozen=True)
class Vote:
    """One judgement, with what rebuilds the prompt each side answered (votes cast before m013 have
    no context: empty dicts)."""

    id: int
    base_model: str
    first: str  # adapter name; "" is the base model alone
    second: str
    winner: str  # first | second | tie
    prompt: str
    first_answer: str
    second_answer: str
    first_context: dict  # {"role": Role.as_dict(), "prompt_format": str}
    second_context: dict
    created_at: float
    owner_id: int | None = None  # who voted (team mode; None: the studio's owner)


def store(db: Database, **row) -> dict:
    if row["winner"] not in WINNERS or not row["first"] < row["second"]:
        raise ValueError(f"not a vote: {row['first']!r} < {row['second']!r}, winner {row['winner']!r}")
    for side in ("first_context", "second_context"):
        if side in row:
            row[side] = to_json(row[side])
    with db.conn:
        vote_id = db["votes"].insert({**row, "created_at": now()}).last_pk
    return db["votes"].get(vote_id)


def for_base(db: Database, base_model: str, *, up_to: int | None = None) -> list[Vote]:
    """The votes cast on one base model, oldest first (up to vote id `up_to`)."""
    where, values = "base_model = ?", [base_model]
    if up_to is not None:
        where, values = where + " and id <= ?", [*values, up_to]
    return [_decode(row) for row in db["votes"].rows_where(where, values, order_by="id")]


def tallies(db: Database) -> list[dict]:
    """Per base model and pair: how often each side won, and the ties."""
    return list(
        db.query(
            "select base_model, first, second, "
            "sum(winner = 'first') as first_wins, sum(winner = 'second') as second_wins, "
            "sum(winner = 'tie') as ties, count(*) as votes "
            "from votes group by base_model, first, second order by base_model, first, second"
        )
    )


def forget(db: Database, base_model: str, name: str) -> None:
    """Votes that involve an adapter go with it (call inside the deleting transaction)."""
    db.execute("delete from votes where base_model = ? and ? in (first, second)", [base_model, name])


def rename(db: Database, base_model: str, old: str, new: str) -> None:
    """Votes follow a renamed adapter, the pair kept in name order (call inside the renaming
    transaction)."""
    swap = {"first": "second", "second": "first", "tie": "tie"}
    rows = db.execute(
        "select id, first, second, winner, first_answer, second_answer, first_context, second_context "
        "from votes where base_model = ? and ? in (first, second)",
        [base_model, old],
    ).fetchall()
    for vote_id, first, second, winner, first_answer, second_answer, first_context, second_context in rows:
        first, second = (new if first == old else first), (new if second == old else second)
        if first > second:
            first, second, winner = second, first, swap[winner]
            first_answer, second_answer = second_answer, first_answer
            first_context, second_context = second_context, first_context
        db.execute(
            "update votes set first = ?, second = ?, winner = ?, first_answer = ?, second_answer = ?, "
            "first_context = ?, second_context = ? where id = ?",
            [first, second, winner, first_answer, second_answer, first_context, second_context, vote_id],
        )


def _decode(row: dict) -> Vote:
    return Vote(
        id=row["id"],
        base_model=row["base_model"],
        first=row["first"],
        second=row["second"],
        winner=row["winner"],
        prompt=row.get("prompt") or "",
        first_answer=row.get("first_answer") or "",
        second_answer=row.get("second_answer") or "",
        first_context=from_json(row.get("first_context"), {}),
        second_context=from_json(row.get("second_context"), {}),
        created_at=row["created_at"],
        owner_id=row.get("owner_id"),
    )

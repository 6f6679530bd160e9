"""Rows of `votes`: blind A/B judgements between two answers to one prompt."""

from sqlite_utils import Database

from registry.db import now

WINNERS = ("first", "second", "tie")


def store(db: Database, **row) -> dict:
    if row["winner"] not in WINNERS or not row["first"] < row["second"]:
        raise ValueError(f"not a vote: {row['first']!r} < {row['second']!r}, winner {row['winner']!r}")
    with db.conn:
        vote_id = db["votes"].insert({**row, "created_at": now()}).last_pk
    return db["votes"].get(vote_id)


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
        "select id, first, second, winner, first_answer, second_answer from votes "
        "where base_model = ? and ? in (first, second)",
        [base_model, old],
    ).fetchall()
    for vote_id, first, second, winner, first_answer, second_answer in rows:
        first, second = (new if first == old else first), (new if second == old else second)
        if first > second:
            first, second, winner = second, first, swap[winner]
            first_answer, second_answer = second_answer, first_answer
        db.execute(
            "update votes set first = ?, second = ?, winner = ?, first_answer = ?, second_answer = ? "
            "where id = ?",
            [first, second, winner, first_answer, second_answer, vote_id],
        )

"""The fault tests' ledger (tests/faults/ledger.py) on hand-made rows: it must flag a lost, a duplicated and an
unlogged write, and accept a write whose ack died with the server when the database holds exactly what was
sent (test_asgi_kill once failed on such a write: sent during the opinion phase, stored, the socket killed
before the ack, the group already rating at the reconnect)."""

from .ledger import compare




class FakeCursor:
    def __init__(self, opinions=(), critiques=(), ratings=()):
        self.rows = {"deliberation_opinion": list(opinions), "deliberation_critique": list(critiques),
                     "deliberation_rating": list(ratings)}
        self.result = []

    def execute(self, sql, params):
        self.result = next(rows for table, rows in self.rows.items() if f"FROM {table}" in sql)

    def fetchall(self):
        return self.result


def write(kind, outcome, text="I think so.", ref="r1"):
    message = {"type": f"submit_{kind}", "text": text} if kind != "rating" else \
        {"type": "submit_ratings", "round": 1, "ratings": [{"candidate_id": 7, "agreement": 5, "quality": 4}],
         "ranking": [7]}
    return {"ref": ref, "kind": kind, "group": 1, "phase": kind, "message": message, "outcome": outcome}


def bots(*writes):
    return [{"pid": "bot-1", "writes": list(writes)}]


def test_an_acknowledged_write_in_the_database_is_neither_lost_nor_unlogged():
    ledger = compare(bots(write("opinion", "created")), FakeCursor(opinions=[("bot-1", "I think so.", False)]), 1)
    assert (ledger["lost"], ledger["duplicated"], ledger["unlogged"], ledger["acks_lost"]) == ([], [], [], 0)
    assert ledger["db_writes"] == ledger["logged_writes"] == 1


def test_a_write_whose_ack_died_counts_when_the_database_holds_exactly_it():
    cursor = FakeCursor(opinions=[("bot-1", "I think so.", False)],
                        ratings=[("bot-1", 1, 7, 5, 4, 1, False)])
    ledger = compare(bots(write("opinion", "unanswered"), write("rating", "unanswered", ref="r2")), cursor, 1)
    assert (ledger["lost"], ledger["duplicated"], ledger["unlogged"]) == ([], [], [])
    assert ledger["acks_lost"] == 2 and ledger["db_writes"] == ledger["logged_writes"] == 2
    assert ledger["db_rating_rows"] == ledger["logged_rating_rows"] == 1


def test_a_stored_text_no_bot_sent_is_unlogged():
    cursor = FakeCursor(opinions=[("bot-1", "Something else.", False)])
    ledger = compare(bots(write("opinion", "unanswered")), cursor, 1)
    assert ledger["unlogged"] == [("bot-1", "opinion")] and ledger["acks_lost"] == 0


def test_an_acknowledged_write_missing_from_the_database_is_lost():
    ledger = compare(bots(write("opinion", "created")), FakeCursor(), 1)
    assert ledger["lost"] == [("bot-1", "opinion")]


def test_a_write_stored_twice_is_duplicated():
    cursor = FakeCursor(opinions=[("bot-1", "I think so.", False), ("bot-1", "I think so.", False)])
    ledger = compare(bots(write("opinion", "created")), cursor, 1)
    assert ledger["duplicated"] == [("bot-1", "opinion")]
    # And an unanswered resend is not taken as stored when the database holds two.
    ledger = compare(bots(write("opinion", "unanswered")), cursor, 1)
    assert ledger["acks_lost"] == 0 and ledger["duplicated"] == [("bot-1", "opinion")]

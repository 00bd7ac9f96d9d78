"""The bindings release the GIL while the core validates, logs and stores a batch: another Python
thread writing into the caller's NumPy arrays meanwhile must not change what is stored or logged
(it once put a NaN amount in the durable log, after validation, and the state directory would not
open again: "replay refused: amount: is NaN")."""

from __future__ import annotations

import threading

import numpy as np

from libfraud import Scorer


def test_a_thread_writing_into_the_arrays_during_ingest_cannot_corrupt_the_log(small_bundle, small_transactions,
                                                                              tmp_path):
    state = tmp_path / "state"
    scorer = Scorer(small_bundle, state_dir=state)
    events = scorer.events(small_transactions)
    amount = events.amount  # the array the core reads
    original = amount.copy()
    stop = threading.Event()

    def scribble():
        while not stop.is_set():
            amount[:] = np.nan
            amount[:] = original

    writer = threading.Thread(target=scribble)
    writer.start()
    stored = refused = 0
    try:
        for start in range(0, len(events), 2_000):
            batch = events.slice(start, start + 2_000)
            try:
                scorer._engine.ingest(*batch.args())
                stored += len(batch)
            except Exception as e:  # a NaN seen while copying: refused whole, nothing stored
                assert "amount" in str(e) and "NaN" in str(e), e
                refused += len(batch)
    finally:
        stop.set()
        writer.join()
    assert stored + refused == len(events)
    assert scorer.store_size == stored
    del scorer
    # Everything stored was valid when stored, so the durable state opens again, with all of it.
    reopened = Scorer(small_bundle, state_dir=state)
    assert reopened.store_size == stored

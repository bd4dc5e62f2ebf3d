"""Stage 2's verbalization cache across the ranks of a job and across a requeue: each rank
verbalizes its share once, every rank ends with every text, and a stopped job keeps its chunks."""

from __future__ import annotations

import threading

import pytest

from lit_verbrec.training.cache import VerbalizationCache

EXAMPLES = [{"example_id": f"e{i:02d}", "split": "train"} for i in range(11)]


class Verbalizer:
    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, examples: list[dict]) -> list[str]:
        self.seen += [e["example_id"] for e in examples]
        return [f"text of {e['example_id']}" for e in examples]


def test_two_ranks_split_the_work_and_both_get_every_text(tmp_path):
    verbalizers, results = [Verbalizer(), Verbalizer()], [None, None]

    def rank(r: int) -> None:
        results[r] = VerbalizationCache(tmp_path, "action", "k").texts(EXAMPLES, verbalizers[r], shard=(r, 2), chunk=2,
                                                                      poll_s=0.01)

    threads = [threading.Thread(target=rank, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = [e["example_id"] for e in EXAMPLES]
    assert verbalizers[0].seen == ids[0::2] and verbalizers[1].seen == ids[1::2]   # each example once
    assert results[0] == results[1] == {i: f"text of {i}" for i in ids}
    assert VerbalizationCache(tmp_path, "action", "k").stored_texts() == results[0]   # what export reads


class Preempted(Exception):
    pass


def test_a_stop_after_a_chunk_keeps_it_and_the_requeued_job_does_only_the_rest(tmp_path):
    first, saved = Verbalizer(), []

    def stop_after_two_chunks(what: str) -> None:
        saved.append(what)
        if len(saved) == 2:
            raise Preempted   # the job exits here (preemption.exit_if_signalled)

    with pytest.raises(Preempted):
        VerbalizationCache(tmp_path, "action", "k").texts(EXAMPLES, first, shard=(0, 1), chunk=3,
                                                          after_chunk=stop_after_two_chunks)
    assert len(first.seen) == 6 and "6 of this rank's 11 verbalizations saved" in saved[-1]

    again, cache = Verbalizer(), VerbalizationCache(tmp_path, "action", "k")
    texts = cache.texts(EXAMPLES, again, shard=(0, 1), chunk=3)
    assert again.seen == [e["example_id"] for e in EXAMPLES[6:]]          # nothing verbalized twice
    assert cache.reused == 6 and cache.computed == 5 and len(texts) == 11
    assert sorted(p.name for p in tmp_path.iterdir()) == ["verbalizations-action-k.parquet"]   # parts folded in


def test_a_rank_that_starts_late_still_takes_its_own_share(tmp_path):
    """Rank 0 has saved its whole share before rank 1 looks: rank 1 computes exactly the rest."""
    early, late = Verbalizer(), Verbalizer()
    ids = [e["example_id"] for e in EXAMPLES]
    with pytest.raises(TimeoutError):   # rank 0 alone: its share done, it waits for rank 1's
        VerbalizationCache(tmp_path, "action", "k").texts(EXAMPLES, early, shard=(0, 2), chunk=2, poll_s=0.01,
                                                          after_chunk=stop_waiting_after(5))
    texts = VerbalizationCache(tmp_path, "action", "k").texts(EXAMPLES, late, shard=(1, 2), chunk=2, poll_s=0.01,
                                                              after_chunk=stop_waiting_after(50))   # never forever
    assert early.seen == ids[0::2] and late.seen == ids[1::2]
    assert texts == {i: f"text of {i}" for i in ids}


def stop_waiting_after(calls: int):
    """An after_chunk that raises TimeoutError on its `calls`-th call while waiting."""
    count = {"waits": 0}

    def after_chunk(message: str) -> None:
        if message.startswith("waiting"):
            count["waits"] += 1
            if count["waits"] >= calls:
                raise TimeoutError(message)

    return after_chunk

"""dev_choice: the standard-error guard and the gain reported on the dev examples of the test file's dialogues."""

from __future__ import annotations

import numpy as np
import pytest

from qamrec.eval.choice import dev_choice
from qamrec.eval.protocol import CRSExample

ITEMS = [900, 901, 902]


def _ex(i: int, item: int) -> CRSExample:
    return CRSExample(dialogue=i, turn=0, context=("hi",), entities=(), item=item, resp="")


def test_the_test_file_gain_is_measured_on_the_flagged_examples_alone():
    examples = [_ex(0, 900), _ex(1, 900), _ex(2, 901), _ex(3, 901)]
    ref = np.tile(np.float32([3.0, 2.0, 1.0]), (4, 1))  # 900 first everywhere: NDCG@10 1, 1, 1/log2(3), 1/log2(3)
    flip = np.tile(np.float32([2.0, 3.0, 1.0]), (4, 1))  # 901 first everywhere
    flags = [True, False, True, True]
    rows, best = dev_choice([({"s": "ref"}, ref), ({"s": "flip"}, flip)], examples, ITEMS, flags)
    g = 1 - 1 / np.log2(3)  # what an example gains when its answer moves from second to first place
    assert rows[0]["test_file_gain"] == 0.0 and rows[0]["test_file_gain_se"] == 0.0
    # flagged: examples 0 (loses g), 2 and 3 (gain g each); the unflagged example 1 loses g
    assert rows[1]["test_file_gain"] == pytest.approx(g / 3)
    assert rows[1]["test_file_gain_se"] == pytest.approx(np.std([-g, g, g], ddof=1) / np.sqrt(3))
    assert rows[1]["ndcg@10"] == pytest.approx(rows[0]["ndcg@10"])  # level over all four: the guard keeps the first
    assert best == 0
    plain, _ = dev_choice([({"s": "ref"}, ref), ({"s": "flip"}, flip)], examples, ITEMS)
    assert all("test_file_gain" not in r for r in plain)
    none, _ = dev_choice([({"s": "ref"}, ref)], examples, ITEMS, [False] * 4)
    assert "test_file_gain" not in none[0]


def test_flags_must_match_the_examples():
    with pytest.raises(ValueError, match="3 flags for 4 examples"):
        dev_choice([({}, np.zeros((4, 3), np.float32))], [_ex(i, 900) for i in range(4)], ITEMS, [True] * 3)

r"""One id per movie in a ranking: the dataset's entity id its answers use, learned from training labels.

A CRS dataset's entity space can name one film by several ids (UniCRS's ReDial space names about 120 films twice:
"Bridesmaids" and "Bridesmaids (2011 film)"). Every id of a movie reads the same movie node, so they score alike
and a ranking lists the movie once per id: on ReDial about 0.6 of the ten first places a query are such second
copies. A protocol that scores entity ids counts one id only, the one its file's entity linking gave the answer,
and that linking is not the catalog's: on the training dialogues of ReDial's UniCRS validation file, more than half
of the answers that name such a film use the id that examples made from the raw dialogues never use.

So each movie with several ids is listed under the id most answers in the test file's own format use
(:math:`\arg\max_j n_j` over its ids :math:`j`, with :math:`n_j` counted on the training examples in that format,
``CRSData.train_as_test``; ties: the one the other training examples use most, then the first), and its other ids
are scored below every listed candidate. A movie those answers never name keeps all its ids: nothing says which
one the test would use.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import torch
from torch import Tensor

from qamrec.eval.protocol import CRSExample
from qamrec.graph.store import candidate_columns

__all__ = ["UNLISTED_PENALTY", "unlisted_ids"]

#: what an unlisted id loses (score units; a ReDial score's spread is about 3): it ranks below every listed one
UNLISTED_PENALTY = 1.0e4


def unlisted_ids(candidates: Tensor, item_ids: Sequence[int], labelled: Sequence[CRSExample],
                 others: Sequence[CRSExample] = ()) -> Tensor:
    """``[n_candidates]`` (bool) the ids a movie is not listed under: of each movie node named by several
    ``candidates`` (column -> movie node) and answered in ``labelled``, every id but the one its answers there use
    most (ties: most used in ``others``, then the first column)."""
    col = {e: j for j, e in enumerate(item_ids)}
    in_test_format = Counter(col[e.item] for e in labelled if e.item in col)
    elsewhere = Counter(col[e.item] for e in others if e.item in col)
    out = torch.zeros(len(candidates), dtype=torch.bool)
    for ids in candidate_columns(candidates.tolist()).values():
        if len(ids) > 1 and any(in_test_format[j] for j in ids):
            keep = max(ids, key=lambda j: (in_test_format[j], elsewhere[j], -j))
            out[[j for j in ids if j != keep]] = True
    return out

"""Conversational-recommendation evaluation: the UniCRS example protocol, ranking metrics, published results."""

from qamrec.eval.evaluate import PUBLISHED, PUBLISHED_SOURCE, comparison_table, evaluate, metrics_from_ranks
from qamrec.eval.metrics import MAP, MRR, NDCG, Precision, RankMetric, Recall, as_ranks, ranks_of
from qamrec.eval.protocol import CRSExample, read_crs_examples, read_item_ids, unicrs_inspired_records

__all__ = [
    "CRSExample",
    "read_crs_examples",
    "read_item_ids",
    "unicrs_inspired_records",
    "RankMetric",
    "Recall",
    "NDCG",
    "MRR",
    "Precision",
    "MAP",
    "ranks_of",
    "as_ranks",
    "evaluate",
    "metrics_from_ranks",
    "PUBLISHED",
    "PUBLISHED_SOURCE",
    "comparison_table",
]

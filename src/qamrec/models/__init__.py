"""Recommenders behind one contract (:class:`~qamrec.models.base.Recommender`)."""

from qamrec.models.base import Recommender
from qamrec.models.baselines import BASELINES, CoOccurrence, Popularity, TextSimilarity
from qamrec.models.ensemble import ScoreEnsemble
from qamrec.models.mscrs import MSCRS
from qamrec.models.qamrec import QAMRec

__all__ = ["Recommender", "QAMRec", "MSCRS", "Popularity", "TextSimilarity", "CoOccurrence", "ScoreEnsemble", "MODELS"]

#: every model a run directory can hold, by ``name`` (an ensemble folder is loaded by ``load_run`` from its members)
MODELS: dict[str, type[Recommender]] = {QAMRec.name: QAMRec, MSCRS.name: MSCRS, **BASELINES}

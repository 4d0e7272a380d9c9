"""QAMRec: the query-aware multi-modal GAT recommender behind the :class:`Recommender` contract."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from qamrec.config import LEGACY_MODEL_SETTINGS, ModelConfig, TrainConfig
from qamrec.data.crs import CRSData
from qamrec.eval.choice import dev_choice
from qamrec.eval.protocol import CRSExample
from qamrec.graph.store import Graph
from qamrec.io import atomic_path, atomic_write_json, read_json
from qamrec.models.base import Recommender
from qamrec.models.listing import UNLISTED_PENALTY, unlisted_ids
from qamrec.models.net import QAMRecNet
from qamrec.models.query import Query, QueryBatch, QueryFeaturizer, context_text, subset
from qamrec.train.checkpoint import checkpointing
from qamrec.train.loop import TrainHistory, fit_net
from qamrec.train.pretrain import Pretraining

__all__ = ["QAMRec", "example_query", "targeted_examples", "training_data"]

TextFn = Callable[[list[str]], np.ndarray]


def example_query(e: CRSExample) -> Query:
    """The query of a CRS example: its context (most recent turns) and its context entities."""
    return Query(text=context_text(e.context), entities=tuple(e.entities))


def training_data(featurize: Callable[[Sequence[Query]], QueryBatch], crs: CRSData,
                  item_ids: Sequence[int]) -> tuple[QueryBatch, torch.Tensor, QueryBatch]:
    """The training queries whose target is a candidate, their targets' columns in ``item_ids``, and the dev
    queries, each featurized by ``featurize``."""
    col = {e: j for j, e in enumerate(item_ids)}
    train = targeted_examples(crs.train, item_ids)
    gold = torch.tensor([col[e.item] for e in train], dtype=torch.long)
    return featurize([example_query(e) for e in train]), gold, featurize([example_query(e) for e in crs.dev])


def targeted_examples(examples: Sequence[CRSExample], item_ids: Sequence[int]) -> list[CRSExample]:
    """The examples whose target is a candidate (``item_ids``), in order: those :func:`training_data` trains on."""
    items = set(item_ids)
    return [e for e in examples if e.item in items]


class QAMRec(Recommender):
    """Fit with :meth:`fit`; score with item representations computed once per fitted model."""

    name = "qamrec"

    def __init__(self, model: ModelConfig, train: TrainConfig, encode_text: TextFn, seed: int = 0) -> None:
        super().__init__()
        self.model_cfg, self.train_cfg, self.encode_text, self.seed = model, train, encode_text, seed
        self.net: QAMRecNet | None = None
        self.history = TrainHistory()
        self._precomputed: tuple[torch.Tensor, torch.Tensor] | None = None
        #: the co-mention memory's weight and each tried weight's dev metrics (set by :meth:`fit`)
        self.comention: dict[str, Any] | None = None
        #: the mention bonus chosen on dev, the learned one and each tried bonus's dev metrics (set by :meth:`fit`)
        self.mention: dict[str, Any] | None = None
        #: the neighbour vote's setting and each tried setting's dev metrics (set by :meth:`fit`)
        self.neighbours: dict[str, Any] | None = None
        #: the ids movies are not listed under, and the test-format dev with and without (set by :meth:`fit`)
        self.listing: dict[str, Any] | None = None

    def _setup(self, graph: Graph) -> None:
        self.graph = graph
        self.featurizer = QueryFeaturizer(graph, self.encode_text, self.model_cfg.retrieved)
        torch.manual_seed(self.seed)
        self.net = QAMRecNet(graph, self.model_cfg, int(self.encode_text.dim))  # type: ignore[attr-defined]
        self._precomputed = None

    def featurize(self, queries: Sequence[Query]) -> QueryBatch:
        return self.featurizer(queries)

    def fit(self, crs: CRSData, graph: Graph, on_epoch: Callable[[dict[str, float]], None] = lambda r: None,
            pretrain: Pretraining | None = None, **kwargs: Any) -> QAMRec:
        """Train on ``crs``'s examples (early stopping on its dev examples); with ``pretrain``, first on its
        pseudo-requests (:mod:`qamrec.train.pretrain`), or with the weights it cached."""
        self._setup(graph)
        train_q, gold, dev_q = training_data(self.featurize, crs, graph.meta["item_ids"])
        if pretrain is not None and pretrain.texts:
            self._pretrain(pretrain, dev_q, crs, graph.meta["item_ids"])
        # start the item biases at log popularity among the training examples
        self.net.init_bias(torch.bincount(gold, minlength=len(graph.meta["item_ids"])).float())  # type: ignore[union-attr]
        memory = self.net.memory  # type: ignore[union-attr]
        extra = None
        if memory is not None and self.model_cfg.comention_train:
            extra = self._memory_in_training(targeted_examples(crs.train, graph.meta["item_ids"]), train_q, gold)
        self.history = fit_net(self.net, train_q, gold, dev_q, crs.dev, graph.meta["item_ids"],  # type: ignore[arg-type]
                               self.train_cfg, self.seed, on_epoch, seen_items={e.item for e in crs.train},
                               extra=extra)
        self._precomputed = None
        if memory is not None:
            memory.weight.requires_grad_(False)
            if crs.dev:
                self.comention = self._choose_memory(dev_q, crs, graph.meta["item_ids"])
        if self.model_cfg.mention_choice and crs.dev:  # after the memory, which was chosen with the learned bonus
            self.mention = self._choose_mention(dev_q, crs, graph.meta["item_ids"])
        if (votes := self.net.neighbours) is not None:  # type: ignore[union-attr]
            votes.remember(train_q.text, gold, train_q.anchors, train_q.anchor_batch)
            if crs.dev:  # after the memory: the vote is weighed against the model with its memory
                base = self.score_batch(dev_q)
                rows = votes.choose(base, dev_q.text, dev_q.anchors, dev_q.anchor_batch, crs.dev,
                                    graph.meta["item_ids"], crs.dev_in_test_file)
                kind = ("both" if bool(votes.both) else "text") if float(votes.weight) else "none"
                self.neighbours = {"kind": kind, "weight": float(votes.weight),
                                   "k": votes.k, "examples": len(votes), "dev": rows}
        if self.model_cfg.one_id_per_movie:  # last: the choices above read dev in the catalog's own ids
            self.listing = self._list_once(crs, graph.meta["item_ids"])
        return self

    def _list_once(self, crs: CRSData, item_ids: Sequence[int]) -> dict[str, Any]:
        """``model.one_id_per_movie``: list each movie under one id, the one the training answers in the test
        file's format use most (:func:`~qamrec.models.listing.unlisted_ids`). Returns the unlisted ids and the
        metrics of the dev dialogues in that format, every id listed (the first row) and one per movie."""
        net = self.net
        assert net is not None
        unlisted = unlisted_ids(net.candidates, item_ids, crs.train_as_test, crs.train)
        rows: list[dict[str, Any]] = []
        if crs.dev_as_test:
            dev_q = self.featurize([example_query(e) for e in crs.dev_as_test])
            every = self.score_batch(dev_q)
            once = every - UNLISTED_PENALTY * unlisted.numpy()
            rows, _ = dev_choice((({"one_id_per_movie": o}, s) for o, s in ((False, every), (True, once))),
                                 crs.dev_as_test, item_ids)  # measured only: the rule has no setting to choose
        with torch.no_grad():
            net.unlisted.copy_(unlisted)
        return {"unlisted": [int(item_ids[j]) for j in unlisted.nonzero().view(-1).tolist()],
                "dev_as_test": rows}

    def _memory_in_training(self, train: Sequence[CRSExample], train_q: QueryBatch,
                            gold: torch.Tensor) -> Callable[[torch.Tensor, QueryBatch], torch.Tensor]:
        """``model.comention_train``: the memory's weight becomes a parameter (from 16, at 100x the learning
        rate), and each training example's memory term leaves out its own dialogue (the movies its dialogue's
        examples name or answer with), which the graph's co-mentions hold (:meth:`CoMention.leave_out`)."""
        memory = self.net.memory  # type: ignore[union-attr]
        gold_node = self.net.candidates[gold].tolist()  # type: ignore[union-attr]
        own: dict[int, set[int]] = {}
        for e, m in zip(train, gold_node):
            own.setdefault(e.dialogue, set()).add(m)
        for a, b in zip(train_q.anchors.tolist(), train_q.anchor_batch.tolist()):
            own[train[b].dialogue].add(a)
        owed = memory.leave_out(train_q.anchors, train_q.anchor_batch, [own[e.dialogue] for e in train])
        with torch.no_grad():
            memory.weight.fill_(16.0)
        memory.weight.requires_grad_(True)
        memory.weight.lr_scale = 100.0  # type: ignore[attr-defined]

        def extra(idx: torch.Tensor, batch: QueryBatch) -> torch.Tensor:
            term = memory.term(batch.anchors, batch.anchor_batch, len(idx)) - owed.index_select(0, idx).to_dense()
            return memory.weight * term

        return extra

    def _choose_memory(self, dev_q: QueryBatch, crs: CRSData, item_ids: Sequence[int]) -> dict[str, Any]:
        """Set the co-mention memory's weight on the dev examples (:meth:`CoMention.choose`; with
        ``model.comention_train`` the learned weight is one of those tried)."""
        memory = self.net.memory  # type: ignore[union-attr]
        learned = float(memory.weight)
        with torch.no_grad():
            memory.weight.fill_(0.0)
        base = self.score_batch(dev_q)
        term = memory.term(dev_q.anchors, dev_q.anchor_batch, len(dev_q)).numpy()
        grid = sorted(set(memory.GRID) | ({learned} if self.model_cfg.comention_train else set()))
        rows = memory.choose(base, term, crs.dev, item_ids, grid,  # its term is added to the scores only
                             crs.dev_in_test_file)
        return {"weight": float(memory.weight), "dev": rows} | (
            {"learned": learned} if self.model_cfg.comention_train else {})

    #: the mention bonuses tried on dev besides the learned one (score units; the scores' std is ~3 on ReDial)
    MENTION_GRID = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)

    def _choose_mention(self, dev_q: QueryBatch, crs: CRSData, item_ids: Sequence[int]) -> dict[str, Any]:
        r"""``model.mention_choice``: set the bonus :math:`\beta` of the movies a query names to the learned one
        or one of :data:`MENTION_GRID`, by dev NDCG@10 (:func:`~qamrec.eval.choice.dev_choice`: the learned one
        unless another gains more than one standard error). Training learns :math:`\beta` for likelihood, and
        there the movie-list examples, which never name their answer again, pull it down (negative on ReDial),
        while 8% of ReDial's dialogue answers name a context movie again, which the protocol counts as a hit.
        With ``model.mention_cap`` each bonus is tried with the named movies also kept below the best other one
        (:meth:`QAMRecNet.below_top`): a large bonus then costs no first places."""
        net = self.net
        assert net is not None
        learned = float(net.mention_bonus.detach())
        with torch.no_grad():  # the bonus is added to the scores only: the cached representations stay valid
            net.mention_bonus.fill_(0.0)
        base = self.score_batch(dev_q)
        term = net.mention_term(dev_q, base.shape[1])
        grid = [learned] + [w for w in self.MENTION_GRID if w != learned]

        def scores(w: float, cap: bool) -> np.ndarray:
            s = torch.from_numpy(base) + w * term
            return (net.below_top(s, term) if cap else s).numpy()

        caps = (False, True) if self.model_cfg.mention_cap else (False,)
        rows, best = dev_choice((({"weight": float(w), "below_top": cap}, scores(w, cap)) for cap in caps
                                 for w in grid), crs.dev, item_ids, crs.dev_in_test_file)
        with torch.no_grad():
            net.mention_bonus.fill_(rows[best]["weight"])
            net.mention_cap.fill_(rows[best]["below_top"])
        return {"weight": rows[best]["weight"], "below_top": rows[best]["below_top"], "learned": learned,
                "dev": rows}

    def _pretrain(self, pre: Pretraining, dev_q: QueryBatch, crs: CRSData, item_ids: Sequence[int]) -> None:
        """Fit the network on the pseudo-requests (kept: the best epoch by dev NDCG@10), or load the cached
        weights; the bias is set again from the dialogues' targets by :meth:`fit` afterwards."""
        assert self.net is not None
        if pre.cache is not None and pre.cache.exists():
            self.net.load_state_dict(load_file(str(pre.cache)))
            pre.cached = True
            return
        t0 = time.perf_counter()
        queries = self.featurize([Query(text=t) for t in pre.texts])
        gold = torch.tensor(pre.columns, dtype=torch.long)
        self.net.init_bias(torch.bincount(gold, minlength=len(item_ids)).float())
        cfg = self.train_cfg.model_copy(update={"epochs": pre.epochs, "patience": pre.epochs})
        with checkpointing(None):  # the run's checkpoint is the dialogue training's
            fit_net(self.net, queries, gold, dev_q, crs.dev, item_ids, cfg, self.seed)
        pre.seconds = time.perf_counter() - t0
        if pre.cache is not None:
            pre.cache.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(pre.cache) as tmp:
                save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))

    @torch.no_grad()
    def precompute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The pooled node table and the candidate representations, computed once (eval mode)."""
        if self._precomputed is None:
            assert self.net is not None, "fit or load first"
            self.net.eval()
            h = self.net.encode_nodes()
            self._precomputed = (self.net.node_table(h), self.net.items(h))
        return self._precomputed

    @torch.no_grad()
    def score_batch(self, qb: QueryBatch, chunk: int = 1024) -> np.ndarray:
        table, items = self.precompute()
        out = []
        for s in range(0, len(qb), chunk):
            sub = subset(qb, torch.arange(s, min(s + chunk, len(qb))))
            p, _ = self.net.preference(table, sub)  # type: ignore[union-attr]
            out.append(self.net.score(p, items, sub).numpy())  # type: ignore[union-attr]
        return np.concatenate(out) if out else np.zeros((0, items.shape[0]), np.float32)

    def score(self, queries: Sequence[Query]) -> np.ndarray:
        return self.score_batch(self.featurize(queries))

    def save(self, folder: Path) -> None:
        assert self.net is not None, "fit first"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        table, items = self.precompute()
        with atomic_path(folder / "items.safetensors") as tmp:
            save_file({"items": items.contiguous(), "bias": self.net.bias.detach().contiguous(),
                       "candidates": self.net.candidates}, str(tmp))
        atomic_write_json(folder / "model.json", {
            "name": self.name, "model": self.model_cfg.model_dump(), "train": self.train_cfg.model_dump(),
            "seed": self.seed, "text_model": getattr(self.encode_text, "model_name", None),
        })

    @classmethod
    def load(cls, folder: Path, graph: Graph, encode_text: TextFn | None = None) -> QAMRec:  # type: ignore[override]
        meta = read_json(folder / "model.json")
        if encode_text is None:
            raise ValueError("QAMRec.load needs the text encoder the model was trained with")
        # settings added later default to what the model was trained with before they existed
        settings = LEGACY_MODEL_SETTINGS | meta["model"]
        model = cls(ModelConfig(**settings), TrainConfig(**meta["train"]), encode_text, meta["seed"])
        model._setup(graph)
        model.net.load_state_dict(load_file(str(folder / "model.safetensors")))  # type: ignore[union-attr]
        model.net.eval()  # type: ignore[union-attr]
        return model

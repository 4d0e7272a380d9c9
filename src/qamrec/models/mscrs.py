r"""MSCRS (Wei et al., SIGIR 2025, "MSCRS: Multi-modal Semantic Graph Prompt Learning Framework for
Conversational Recommender Systems") in our harness, behind the :class:`Recommender` contract.

Nodes are the dataset's items (the movies of its entity space: MovieLens-only movies of our graph take no part)
and its DBpedia entities, each with a free embedding :math:`\mathbf{E}^{(0)}` (as in MSCRS / UniCRS, no content
features). Then

1. Knowledge graph: :math:`\mathbf{H} = \mathbf{E}^{(0)} + \text{R-GCN}(\mathbf{E}^{(0)})` over the graph's
   ``kg_*`` relations (movie-entity, movie-movie, entity-entity, each direction its own relation; basis
   decomposition, :class:`~qamrec.models.rgcn.BasisRGCNConv`).
2. Three semantic item graphs, each encoded by LightGCN (:class:`~qamrec.models.lightgcn.LightGCNEncoder`,
   :math:`\mathbf{E}^{(l+1)} = \mathbf{D}^{-1/2}\mathbf{A}\mathbf{D}^{-1/2}\mathbf{E}^{(l)}`, mean of layers
   :math:`0..L`, :math:`L = 3`), starting from :math:`\mathbf{H}`:

   * collaborative: :math:`\mathbf{A}^{C}_{ij} = [\mathbf{C}_{ij} \ge t]`, :math:`\mathbf{C}_{ij}` = training
     dialogues mentioning both items (the graph's ``dialogue-mentions->movie`` edges; threshold ``comention_min``);
   * text and image: :math:`\mathbf{A}^{m}_{ij} = \max(0, \cos(\mathbf{x}^m_i, \mathbf{x}^m_j))`, top-``knn`` per
     item, symmetric (:func:`~qamrec.models.lightgcn.knn_graph`); :math:`\mathbf{x}^{text}` is the
     all-MiniLM-L6-v2 embedding of the movie's text, :math:`\mathbf{x}^{image}` the EfficientNet-Lite0 embedding
     of its poster (movies without a poster have no image edges).

   :math:`\mathbf{Z} = \mathrm{LGC}_{C}(\mathbf{H})`, and for items
   :math:`\mathbf{Z}_{items} \mathrel{+}= \lambda\, \mathrm{LGC}_{T}(\mathbf{H}) + (1-\lambda)\,
   \mathrm{LGC}_{I}(\mathbf{H})` (``fusion`` = :math:`\lambda`). Entity representations are
   :math:`\mathbf{e} = \mathbf{W}(\mathbf{Z} + \mathrm{MLP}(\mathbf{Z}))`.
3. Conversation: :math:`\mathbf{q} = \mathbf{W}_t(\mathbf{x} + \mathrm{MLP}(\mathbf{x}))` of the context's text
   embedding :math:`\mathbf{x}` (our frozen text encoder); attention over the embeddings of the entities and
   movies named in the context, :math:`\alpha_j = \mathrm{softmax}_j(\mathbf{q}^\top \mathbf{W}_a \mathbf{e}_j /
   \sqrt{d})`, :math:`\mathbf{u} = \mathbf{q} + \sum_j \alpha_j \mathbf{e}_j`, :math:`\mathbf{p} = \mathbf{u} +
   \mathrm{MLP}(\mathbf{u})`.
4. Scores :math:`s_j = \mathbf{p}^\top \mathbf{e}_j` over the full candidate set; cross-entropy, AdamW, early
   stopping on dev NDCG@10 (:func:`~qamrec.train.loop.fit_net`, the loop our model trains with).

How this reads the paper and its released code (``BIAOBIAO12138/MSCRS-main``, ``rec/src/model_prompt.py``,
``dataset_dbpedia*.py``): the R-GCN output feeds the three LightGCNs (their INSPIRED model; the ReDial one
starts the collaborative graph from the free embeddings); the collaborative graph there is built from
entity co-occurrences in conversations, keeping counts of 5 or more on ReDial (here: movies, ``comention_min``
default 1, for our ~1/8 of ReDial's training dialogues); its text / image graphs are top-k cosine graphs
(k = 10 on INSPIRED, 20 on ReDial) with unweighted edges and self loops; here the edges carry the cosine and
there are no self loops (the paper's text was not available to check which it specifies); the code fuses text
and image with equal weights (:math:`\lambda = 0.5`, our default).
**Not reproduced:** MSCRS feeds the fused entity embeddings as prompts to a frozen DialoGPT with a RoBERTa
token encoder (UniCRS-style prompt learning, with a pre-training stage); those weights are not available
here, so the conversation is encoded by our sentence encoder and step 3 stands in for the prompted language
model. ``model.mscrs.features`` (off by default, not in MSCRS) adds a linear map of the frozen text
embeddings of items and entities to :math:`\mathbf{E}^{(0)}`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn
from torch_geometric.utils import scatter, softmax

from qamrec.config import Config, MSCRSConfig, TrainConfig
from qamrec.data.crs import CRSData
from qamrec.graph.store import Graph
from qamrec.io import atomic_path, atomic_write_json, read_json
from qamrec.models.base import Recommender
from qamrec.models.lightgcn import LightGCNEncoder, comention_graph, knn_graph
from qamrec.models.query import Query, QueryBatch, subset
from qamrec.models.rgcn import BasisRGCNConv

__all__ = ["MSCRS", "MSCRSNet", "NOT_REPRODUCED"]

TextFn = Callable[[list[str]], np.ndarray]

#: what of MSCRS this re-implementation leaves out (also written into ``model.json``)
NOT_REPRODUCED = ("no DialoGPT / RoBERTa prompt learning (no weights offline): the conversation is encoded by "
                  "our frozen sentence encoder + attention over the context entities")


def _residual_mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d // 2), nn.ReLU(), nn.Linear(d // 2, d))


def item_movie_nodes(graph: Graph) -> list[int]:
    """The graph's movie nodes that are items of the dataset (candidates first, then other linked movies)."""
    mix = {m: i for i, m in enumerate(graph.meta["movie_ids"])}
    linked = [mix[m] for m in graph.meta.get("entity_movie", {}).values() if m in mix]
    return list(dict.fromkeys([*graph.meta["candidates"], *sorted(set(linked))]))


class MSCRSNet(nn.Module):
    """The MSCRS encoder and scorer over one graph (see the module docstring); node ``i < n_items`` is the item
    ``movie_nodes[i]``, node ``n_items + j`` the graph's entity ``j``."""

    def __init__(self, graph: Graph, cfg: MSCRSConfig, text_dim: int) -> None:
        super().__init__()
        d, h, self.cfg = graph.data, cfg.hidden, cfg
        self.movie_nodes = item_movie_nodes(graph)
        self.n_items = len(self.movie_nodes)
        self.n_entities = int(d["entity"].num_nodes) if "entity" in d.node_types else 0
        n = self.n_items + self.n_entities
        local = torch.full((int(d["movie"].num_nodes),), -1, dtype=torch.long)
        local[torch.tensor(self.movie_nodes, dtype=torch.long)] = torch.arange(self.n_items)
        self.register_buffer("candidates", local[torch.tensor(graph.meta["candidates"], dtype=torch.long)],
                             persistent=False)

        # knowledge graph: every kg_* edge type (and its reverse) is a relation
        def ids(t: str, i: Tensor) -> Tensor:
            return local[i] if t == "movie" else i + self.n_items

        rels = [et for et in d.edge_types if et[1].startswith(("kg_", "rev_kg_"))]
        eis, types = [], []
        for r, et in enumerate(rels):
            ei = torch.stack([ids(et[0], d[et].edge_index[0]), ids(et[2], d[et].edge_index[1])])
            ei = ei[:, (ei >= 0).all(0)]
            eis.append(ei)
            types.append(torch.full((ei.shape[1],), r, dtype=torch.long))
        self.register_buffer("kg_index", torch.cat(eis, 1) if eis else torch.empty(2, 0, dtype=torch.long),
                             persistent=False)
        self.register_buffer("kg_type", torch.cat(types) if types else torch.empty(0, dtype=torch.long),
                             persistent=False)
        self.rgcn = BasisRGCNConv(h, h, len(rels), num_bases=min(cfg.bases, len(rels))) if rels else None

        # the three semantic graphs over items
        movies = torch.tensor(self.movie_nodes, dtype=torch.long)
        ment = ("dialogue", "mentions", "movie")
        if ment in d.edge_types:
            pairs = d[ment].edge_index
            pairs = torch.stack([pairs[0], local[pairs[1]]])
            collab = comention_graph(pairs[:, pairs[1] >= 0], self.n_items, cfg.comention_min)
        else:
            collab = torch.empty(2, 0, dtype=torch.long)
        text = knn_graph(d["movie"].x_text[movies], cfg.knn)
        image = (knn_graph(d["movie"].x_poster[movies], cfg.knn, d["movie"].has_poster[movies].bool())
                 if "x_poster" in d["movie"] else (torch.empty(2, 0, dtype=torch.long), torch.empty(0)))
        self.graph_sizes = {"collaborative": collab.shape[1], "text": text[0].shape[1], "image": image[0].shape[1],
                            "kg": self.kg_index.shape[1]}
        for name, (ei, w), size in (("collab", (collab, None), n), ("text", text, self.n_items),
                                     ("image", image, self.n_items)):
            self.register_buffer(f"{name}_index", ei, persistent=False)
            self.register_buffer(f"{name}_weight", LightGCNEncoder.normalize(ei, w, size), persistent=False)
        self.lightgcn = LightGCNEncoder(cfg.layers)

        self.embedding = nn.Embedding(n, h)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.content: nn.Linear | None = None
        if cfg.features:  # optional, not in MSCRS: E0 += W x_text
            parts = [d["movie"].x_text[movies].float()]
            if self.n_entities:
                parts.append(d["entity"].x_text.float())
            self.register_buffer("x_text", torch.cat(parts), persistent=False)
            self.content = nn.Linear(self.x_text.shape[1], h, bias=False)
        self.entity_mlp, self.entity_out = _residual_mlp(h), nn.Linear(h, h)
        self.token_mlp, self.token_out = _residual_mlp(text_dim), nn.Linear(text_dim, h)
        self.attn = nn.Linear(h, h, bias=False)
        self.prompt_mlp = _residual_mlp(h)
        self.dropout = nn.Dropout(cfg.dropout)

    # ----------------------------------------------------------------- graph side
    def encode_nodes(self) -> Tensor:
        """Entity representations :math:`\\mathbf{e}` [n_items + n_entities, hidden]."""
        e0 = self.embedding.weight
        if self.content is not None:
            e0 = e0 + self.content(self.x_text)
        hk = e0 + self.rgcn(e0, self.kg_index, self.kg_type) if self.rgcn is not None else e0
        z = self.lightgcn(hk, self.collab_index, self.collab_weight)
        items = hk[:self.n_items]
        lam = self.cfg.fusion
        sem = (lam * self.lightgcn(items, self.text_index, self.text_weight)
               + (1.0 - lam) * self.lightgcn(items, self.image_index, self.image_weight))
        z = torch.cat([z[:self.n_items] + sem, z[self.n_items:]])
        return self.entity_out(z + self.entity_mlp(z))

    @staticmethod
    def node_table(h: Tensor) -> Tensor:
        """The table the queries' ``nodes`` index (the entity representations themselves)."""
        return h

    def items(self, h: Tensor) -> Tensor:
        """Candidate representations [n_candidates, hidden]."""
        return h[self.candidates]

    # ----------------------------------------------------------------- conversation side
    def preference(self, table: Tensor, qb: QueryBatch) -> tuple[Tensor, Tensor]:
        """The conversation representation :math:`\\mathbf{p}` [B, hidden] and the attention weights [N]."""
        x = self.dropout(qb.text)
        q = self.token_out(x + self.token_mlp(x))
        alpha = torch.empty(0)
        if qb.nodes.numel():
            e = table[qb.nodes]
            logits = (self.attn(q)[qb.batch] * e).sum(-1) / math.sqrt(e.shape[1])
            alpha = softmax(logits, qb.batch, num_nodes=len(qb))
            q = q + scatter(alpha.unsqueeze(-1) * e, qb.batch, dim=0, dim_size=len(qb), reduce="sum")
        u = self.dropout(q)
        return u + self.prompt_mlp(u), alpha

    @staticmethod
    def regularizer() -> Tensor:
        """Nothing is added to the loss."""
        return torch.zeros(())

    @staticmethod
    def score(p: Tensor, items: Tensor, qb: QueryBatch | None = None) -> Tensor:
        """:math:`s_j = \\mathbf{p}^\\top \\mathbf{e}_j` [B, n_candidates]."""
        return p @ items.T

    def forward(self, qb: QueryBatch, h: dict[str, Tensor] | None = None) -> Tensor:
        """Scores [B, n_candidates] (one pass over the graphs, or their representations ``h`` of an earlier one)."""
        h = self.encode_nodes() if h is None else h
        p, _ = self.preference(self.node_table(h), qb)
        return self.score(p, self.items(h), qb)


class MSCRS(Recommender):
    """MSCRS behind the contract: ``fit`` trains :class:`MSCRSNet` with our training loop."""

    name = "mscrs"
    #: printed by ``qamrec train`` / ``evaluate`` beside the metrics
    note = "re-implementation of MSCRS (SIGIR'25) without its LM; " + NOT_REPRODUCED

    def __init__(self, cfg: MSCRSConfig, train: TrainConfig, encode_text: TextFn, seed: int = 0) -> None:
        super().__init__()
        self.cfg, self.train_cfg, self.encode_text, self.seed = cfg, train, encode_text, seed
        self.net: MSCRSNet | None = None
        self.history: Any = None
        self._precomputed: tuple[Tensor, Tensor] | None = None

    @classmethod
    def from_config(cls, config: Config, encode_text: TextFn) -> MSCRS:
        """The model ``qamrec train --model mscrs`` makes: settings ``model.mscrs``, ``train`` and ``seed``."""
        return cls(config.model.mscrs, config.train, encode_text, config.seed)

    def _setup(self, graph: Graph) -> None:
        self.graph = graph
        torch.manual_seed(self.seed)
        self.net = MSCRSNet(graph, self.cfg, int(self.encode_text.dim))  # type: ignore[attr-defined]
        n_items = self.net.n_items
        self.node_of: dict[int, int] = {}  # dataset entity id -> node
        self.node_of.update({e: n_items + j for j, e in enumerate(graph.meta.get("entity_ids", []))})
        item_local = {m: i for i, m in enumerate(self.net.movie_nodes)}
        movie_ids = graph.meta["movie_ids"]
        self.movie_node = {movie_ids[m]: i for m, i in item_local.items()}  # catalog movie id -> node
        self.node_of.update({int(e): self.movie_node[m] for e, m in graph.meta.get("entity_movie", {}).items()
                             if m in self.movie_node})
        self.node_of.update({e: item_local[m] for e, m in zip(graph.meta["item_ids"], graph.meta["candidates"])})
        self._precomputed = None

    def featurize(self, queries: Sequence[Query]) -> QueryBatch:
        """Text embeddings and the context's entity / movie nodes (in order, no repeats)."""
        text = torch.from_numpy(np.asarray(self.encode_text([q.text for q in queries]), dtype=np.float32))
        nodes: list[int] = []
        batch: list[int] = []
        for b, q in enumerate(queries):
            found = [self.node_of[e] for e in q.entities if e in self.node_of]
            found += [self.movie_node[m] for m in q.movies if m in self.movie_node]
            found = list(dict.fromkeys(found))
            nodes += found
            batch += [b] * len(found)
        return QueryBatch(text, torch.tensor(nodes, dtype=torch.long), torch.tensor(batch, dtype=torch.long),
                          torch.zeros(len(nodes)))

    def fit(self, crs: CRSData, graph: Graph, on_epoch: Callable[[dict[str, float]], None] = lambda r: None,
            **kwargs: Any) -> MSCRS:
        from qamrec.models.qamrec import training_data
        from qamrec.train.loop import fit_net

        self._setup(graph)
        train_q, gold, dev_q = training_data(self.featurize, crs, graph.meta["item_ids"])
        # fit_net only calls what MSCRSNet shares with QAMRecNet (forward, encode_nodes, node_table, items,
        # preference, score, regularizer); its free entity embeddings learn from every batch (graph_every=1)
        net: Any = self.net
        self.history = fit_net(net, train_q, gold, dev_q, crs.dev, graph.meta["item_ids"],
                               self.train_cfg.model_copy(update={"graph_every": 1}), self.seed, on_epoch)
        self._precomputed = None
        return self

    @torch.no_grad()
    def precompute(self) -> tuple[Tensor, Tensor]:
        """The entity table and the candidate representations, computed once (eval mode)."""
        if self._precomputed is None:
            assert self.net is not None, "fit or load first"
            self.net.eval()
            h = self.net.encode_nodes()
            self._precomputed = (self.net.node_table(h), self.net.items(h))
        return self._precomputed

    @torch.no_grad()
    def score(self, queries: Sequence[Query], chunk: int = 1024) -> np.ndarray:
        assert self.net is not None, "fit or load first"
        table, items = self.precompute()
        qb = self.featurize(queries)
        out = []
        for s in range(0, len(qb), chunk):
            sub = subset(qb, torch.arange(s, min(s + chunk, len(qb))))
            p, _ = self.net.preference(table, sub)
            out.append(self.net.score(p, items).numpy())
        return np.concatenate(out) if out else np.zeros((0, items.shape[0]), np.float32)

    def save(self, folder: Path) -> None:
        assert self.net is not None, "fit first"
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_path(folder / "model.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in self.net.state_dict().items()}, str(tmp))
        atomic_write_json(folder / "model.json", {
            "name": self.name, "mscrs": self.cfg.model_dump(), "train": self.train_cfg.model_dump(),
            "seed": self.seed, "text_model": getattr(self.encode_text, "model_name", None),
            "graph_sizes": self.net.graph_sizes, "not_reproduced": NOT_REPRODUCED,
        })

    @classmethod
    def load(cls, folder: Path, graph: Graph, encode_text: TextFn | None = None) -> MSCRS:  # type: ignore[override]
        meta = read_json(folder / "model.json")
        if meta.get("name") != cls.name:
            raise ValueError(f"{folder} does not hold a {cls.name} model")
        if encode_text is None:
            raise ValueError("MSCRS.load needs the text encoder the model was trained with")
        model = cls(MSCRSConfig(**meta["mscrs"]), TrainConfig(**meta["train"]), encode_text, meta["seed"])
        model._setup(graph)
        model.net.load_state_dict(load_file(str(folder / "model.safetensors")))  # type: ignore[union-attr]
        model.net.eval()  # type: ignore[union-attr]
        return model

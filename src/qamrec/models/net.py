"""QAMRecNet: node inputs -> GATEncoder -> item tower; query -> QueryAwarePooling -> fusion -> scores."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from qamrec.config import ModelConfig
from qamrec.errors import QamrecError
from qamrec.graph.store import Graph
from qamrec.models.gat import GATEncoder
from qamrec.models.listing import UNLISTED_PENALTY
from qamrec.models.memory import CoMention
from qamrec.models.neighbours import ContextNeighbours
from qamrec.models.modality import ModalityGate
from qamrec.models.pooling import QueryAwarePooling
from qamrec.models.prior import ItemPrior, prior_features
from qamrec.models.query import POOLED_TYPES, ROLES, QueryBatch

__all__ = ["QAMRecNet"]

_TEXT_TYPES = ("entity", "genre", "tag")


def _mlp(i: int, o: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(i, o), nn.ELU(), nn.Dropout(dropout), nn.Linear(o, o))


class QAMRecNet(nn.Module):
    r"""The query-aware multi-modal graph recommender.

    1. Node inputs: a movie is :math:`\mathbf{W}_m[\mathbf{x}^{text} \| \mathbf{x}^{poster} \| \mathbb{1}_{poster}]`
       (plus a free embedding :math:`\mathbf{e}_m`, zero at the start, with ``model.id_embedding``; in training
       it is dropped for a random share ``model.id_dropout`` of the movies at each encoder pass, so the content
       path learns to rank a movie on its own, as DropoutNet, Volkovs et al. NeurIPS 2017, does for cold start);
       entities, genres and tags are :math:`\mathbf{W}_t \mathbf{x}^{text}`; users and dialogues (no content)
       have learned embeddings.
    2. :class:`~qamrec.models.gat.GATEncoder` over all relations (or a per-type MLP: the no-graph ablation).
    3. Items: :math:`\mathbf{v}_j = \mathbf{W}_v \mathbf{h}_{m(j)}` for candidate :math:`j` on movie node
       :math:`m(j)`, with a bias :math:`b_j` (``model.item_prior``: predicted from popularity features and
       content by :class:`~qamrec.models.prior.ItemPrior`, so that a movie no training example targets is not
       condemned; else a free parameter :math:`b_{m(j)}` per movie, ``model.shared_bias``, or per candidate).
       Every term of the score then depends on the movie only, so two entities naming one movie score alike.
       They depend on the graph only, so they are precomputed for serving.
    4. Query: :math:`\mathbf{q} = \mathrm{MLP}(\mathbf{x}^{text}_{query})`; :math:`\mathbf{g}` =
       :class:`~qamrec.models.pooling.QueryAwarePooling` of the query's node set.
    5. Fusion and score: :math:`\mathbf{p} = \mathbf{q} + \mathrm{MLP}([\mathbf{q} \| \mathbf{g} \|
       \mathbf{q} \odot \mathbf{g}])`, :math:`s_j = \mathbf{p}^\top \mathbf{v}_j + b_j + \lambda
       \cos(\mathbf{x}^{text}_{query}, \mathbf{x}^{text}_{m(j)})`; the last term (a learned weight on the
       frozen text similarity, off without text features) lets training start from text retrieval, and
       :math:`\beta` is added for candidates the query itself mentions (recommenders often come back to a
       movie already named: 7.5% of ReDial and 24% of INSPIRED validation answers; learned, then with
       ``model.mention_choice`` set on dev after training, :meth:`mention_term`; with ``model.mention_cap``
       the choice may also keep them below the best other candidate, :meth:`below_top`). With ``model.comention``,
       :class:`~qamrec.models.memory.CoMention` adds :math:`w \sum_{a} \hat C_{a\,m(j)}`: how often the movies
       the query names were mentioned with candidate :math:`j` in the training dialogues (:math:`w` chosen on
       dev after training). With ``model.neighbours``, :class:`~qamrec.models.neighbours.ContextNeighbours`
       adds the answers of the training examples whose contexts are most like the query's (chosen alike).
       With ``model.one_id_per_movie``, a movie the dataset names by several ids is listed under one of them
       (set after training, :mod:`~qamrec.models.listing`): its other ids lose :data:`UNLISTED_PENALTY`.
    6. With ``model.modality_gate``, the MSMRec-style mixture of semantic modalities (Yu et al.) inside the
       scorer (:class:`~qamrec.models.modality.ModalityGate`, conditioned on the query's preference
       :math:`\mathbf{p}`): each candidate's frozen modality embeddings (plot, cast, crew, genres, tags: the
       graph's ``x_mod_<name>``; the poster) are projected, :math:`\mathbf{e}_{j,k} = \mathbf{W}_k
       \mathbf{x}_{m(j),k}`, weighed by :math:`\alpha_{q,j,k} = \operatorname{softmax}_k \langle \mathbf{p},
       \mathbf{e}_{j,k} \rangle` over the modalities the movie has, and the score uses :math:`\hat{\mathbf{v}}_j
       = \mathbf{v}_j + \sum_k \alpha_{q,j,k} \mathbf{e}_{j,k}` in place of :math:`\mathbf{v}_j`:
       :math:`s_j \mathrel{+}= \sum_k \alpha_{q,j,k} \langle \mathbf{p}, \mathbf{e}_{j,k} \rangle`.
       :math:`\alpha` says which modality a recommendation rests on (:meth:`score_with_weights`). The
       projections start at zero, so training starts from the scorer without the gate.
    """

    def __init__(self, graph: Graph, cfg: ModelConfig, text_dim: int) -> None:
        super().__init__()
        data = graph.data
        h, self.cfg = cfg.hidden, cfg
        self.node_types = list(data.node_types)
        self.edge_types = list(data.edge_types)
        movie = data["movie"]
        n_movies = int(movie.num_nodes)
        self.use_poster = cfg.poster_features and "x_poster" in movie
        self.register_buffer("movie_text", movie.x_text.float(), persistent=False)
        if self.use_poster:
            self.register_buffer("movie_poster", movie.x_poster.float(), persistent=False)
            self.register_buffer("has_poster", movie.has_poster.float().unsqueeze(1), persistent=False)
        width = (text_dim if cfg.text_features else 0) + (movie.x_poster.shape[1] + 1 if self.use_poster else 0)
        self.movie_in = nn.Linear(width, h) if width else None
        self.movie_emb = None if cfg.text_features else nn.Embedding(n_movies, h)
        self.text_in = nn.ModuleDict()
        self.embed = nn.ModuleDict()
        for t in self.node_types:
            if t == "movie":
                continue
            if t in _TEXT_TYPES and "x_text" in data[t]:
                self.register_buffer(f"x_{t}", data[t].x_text.float(), persistent=False)
                self.text_in[t] = nn.Linear(text_dim, h)
            else:
                self.embed[t] = nn.Embedding(int(data[t].num_nodes), h)
        for et in self.edge_types:
            self.register_buffer("ei_" + "__".join(et), data[et].edge_index, persistent=False)
            if "edge_attr" in data[et]:
                self.register_buffer("ea_" + "__".join(et), data[et].edge_attr.float(), persistent=False)
        edge_dims = {et: int(data[et].edge_attr.shape[1]) for et in self.edge_types if "edge_attr" in data[et]}
        if cfg.encoder == "gat" and cfg.layers > 0:
            self.encoder: nn.Module = GATEncoder(self.node_types, self.edge_types, h, cfg.layers, cfg.heads,
                                                 cfg.dropout, edge_dims, cfg.attention)
        else:
            self.encoder = nn.ModuleDict({t: _mlp(h, h, cfg.dropout) for t in self.node_types})
        self.register_buffer("candidates", torch.tensor(graph.meta["candidates"], dtype=torch.long), persistent=False)
        self.query = _mlp(text_dim, h, cfg.dropout)
        self.pool = QueryAwarePooling(h, cfg.pooling, len(ROLES) if cfg.pool_roles else 0, cfg.pool_recency)
        self.fuse = _mlp(3 * h, h, cfg.dropout)
        self.item = nn.Linear(h, h)
        if cfg.item_prior:  # the bias predicted from popularity features and content, shared per movie
            self.prior: ItemPrior | None = ItemPrior(prior_features(graph), movie.x_text if cfg.text_features
                                                     else None, self.candidates)
        else:  # a free bias per candidate movie (shared by the entities naming it), or per candidate
            self.prior = None
            nodes, slot = torch.unique(self.candidates, return_inverse=True)
            if not cfg.shared_bias:
                nodes, slot = self.candidates, torch.arange(len(self.candidates))
            self.register_buffer("bias_slot", slot, persistent=False)
            self.free_bias = nn.Parameter(torch.zeros(len(nodes)))
        if cfg.text_features:
            cand_text = nn.functional.normalize(movie.x_text.float()[graph.meta["candidates"]], dim=1)
            self.register_buffer("cand_text", cand_text, persistent=False)
            self.text_weight = nn.Parameter(torch.tensor(10.0))
        self.mention_bonus = nn.Parameter(torch.tensor(1.0))
        #: keep the named candidates below the best other one (:meth:`below_top`; set on dev after training)
        self.register_buffer("mention_cap", torch.tensor(False))
        #: the ids a movie is not listed under (:func:`~qamrec.models.listing.unlisted_ids`; set after training)
        self.register_buffer("unlisted", torch.zeros(len(self.candidates), dtype=torch.bool))
        self.dropout = nn.Dropout(cfg.dropout)
        #: the modality gate (created last, so the other parameters' initialisation does not depend on it)
        self.gate: ModalityGate | None = self._make_gate(graph) if cfg.modality_gate else None
        #: a free residual per movie on its content input (``model.id_embedding``), from zero; created last too
        self.movie_id: nn.Embedding | None = None
        if cfg.id_embedding and self.movie_emb is None:
            self.movie_id = nn.Embedding(n_movies, h)
            nn.init.zeros_(self.movie_id.weight)
        #: the co-mention memory (``model.comention``): weight 0 in training, chosen on dev afterwards
        self.memory: CoMention | None = CoMention(graph) if cfg.comention else None
        #: the training examples' vote (``model.neighbours``): stored and weighed on dev after training
        self.neighbours: ContextNeighbours | None = (
            ContextNeighbours(n_movies, len(self.candidates), cfg.neighbours_k, self.candidates)
            if cfg.neighbours else None)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        state_dict.setdefault(prefix + "mention_cap", torch.tensor(False))  # saved before the cap existed
        state_dict.setdefault(prefix + "unlisted", torch.zeros_like(self.unlisted))  # before the listing existed
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def bias(self) -> Tensor:
        """``[n_candidates]`` the score bias of each candidate (:class:`~qamrec.models.prior.ItemPrior`, or free)."""
        return self.prior() if self.prior is not None else self.free_bias[self.bias_slot]

    def regularizer(self) -> Tensor:
        r"""What the training loss adds: :math:`\lambda \sum_m c_m^2` over the prior's free residuals."""
        if self.prior is None or not self.cfg.bias_l2:
            return torch.zeros(())
        return self.cfg.bias_l2 * self.prior.penalty()

    @torch.no_grad()
    def init_bias(self, counts: Tensor) -> None:
        """Start the bias at log popularity among the training targets (``counts`` per candidate)."""
        if self.prior is not None:
            self.prior.init_from_counts(counts)
        else:
            per = torch.zeros(len(self.free_bias), dtype=counts.dtype).index_add_(0, self.bias_slot, counts)
            self.free_bias.copy_(torch.log1p(per) - torch.log1p(per).mean())

    def _make_gate(self, graph: Graph) -> ModalityGate:
        """The gate over the candidates' modalities; buffers ``mod_x_<k>`` [C, D_k] and ``mod_mask`` [C, K]."""
        movie = graph.data["movie"]
        names = list(graph.meta.get("modalities") or [])
        if not names or "mod_mask" not in movie or any(f"x_mod_{n}" not in movie for n in names):
            raise QamrecError("model.modality_gate needs a graph with per-modality movie embeddings: build it "
                              "with --set model.modality_gate=true")
        cands = self.candidates
        feats = [movie[f"x_mod_{n}"].float()[cands] for n in names]
        masks = [movie.mod_mask.bool()[cands]]
        if self.use_poster:
            names.append("poster")
            feats.append(self.movie_poster[cands] * self.has_poster[cands])
            masks.append(self.has_poster[cands].bool())
        for k, f in enumerate(feats):
            self.register_buffer(f"mod_x_{k}", f, persistent=False)
        self.register_buffer("mod_mask", torch.cat(masks, dim=1), persistent=False)
        gate = ModalityGate([f.shape[1] for f in feats], self.cfg.hidden, dropout=self.cfg.dropout, names=names)
        for proj in gate.proj:  # e_{j,k} = 0 at the start: the scorer starts as the one without the gate
            nn.init.zeros_(proj.weight)
        return gate

    def modal_table(self) -> Tensor:
        r"""``[K, n_candidates, hidden]`` projected modality embeddings :math:`\mathbf{e}_{j,k}` (gate on only)."""
        assert self.gate is not None, "model.modality_gate is off"
        return self.gate.project([getattr(self, f"mod_x_{k}") for k in range(self.gate.n_modalities)])

    # ----------------------------------------------------------------- graph side
    def node_inputs(self, cold: Tensor | None = None) -> dict[str, Tensor]:
        """Every node type's input representations; ``cold`` [n_movies] bool: movies seen without their free
        embedding (training only)."""
        x: dict[str, Tensor] = {}
        parts = []
        if self.cfg.text_features:
            parts.append(self.movie_text)
        if self.use_poster:
            parts += [self.movie_poster * self.has_poster, self.has_poster]
        m = self.movie_in(self.dropout(torch.cat(parts, dim=1))) if parts else 0
        x["movie"] = m + self.movie_emb.weight if self.movie_emb is not None else m
        if self.movie_id is not None:
            e = self.movie_id.weight
            drop = cold
            if self.training and self.cfg.id_dropout:  # DropoutNet: some movies are seen from content alone
                lost = torch.rand(e.shape[0], device=e.device) < self.cfg.id_dropout
                drop = lost if drop is None else drop | lost
            x["movie"] = x["movie"] + (e if drop is None else e * (~drop).unsqueeze(1).to(e.dtype))
        for t, lin in self.text_in.items():
            x[t] = lin(self.dropout(getattr(self, f"x_{t}")))
        for t, emb in self.embed.items():
            x[t] = emb.weight
        return x

    def encode_nodes(self, trace: dict | None = None, states: list | None = None) -> dict[str, Tensor]:
        """Representations of every node after the encoder (``trace``, ``states``: see :class:`GATEncoder`).

        In training with ``model.cold_dropout``, a random share of the movies are made cold for this pass: no
        free embedding and no incoming edge, as a movie outside the graph is encoded (DropoutNet at the node
        level), so the item side learns to rank such a movie from its content."""
        cold = None
        if self.training and self.cfg.cold_dropout and self.movie_text.shape[0]:
            cold = torch.rand(self.movie_text.shape[0], device=self.movie_text.device) < self.cfg.cold_dropout
        x = self.node_inputs(cold)
        if isinstance(self.encoder, GATEncoder):
            ei = {et: getattr(self, "ei_" + "__".join(et)) for et in self.edge_types}
            ea = {et: getattr(self, "ea_" + "__".join(et)) for et in self.edge_types
                  if hasattr(self, "ea_" + "__".join(et))}
            if cold is not None:
                for et in [et for et in ei if et[2] == "movie"]:
                    keep = ~cold[ei[et][1]]
                    ei[et] = ei[et][:, keep]
                    if et in ea:
                        ea[et] = ea[et][keep]
            return self.encoder(x, ei, ea, trace, states, cache=cold is None)
        return {t: v + self.encoder[t](v) for t, v in x.items()}

    @torch.no_grad()
    def new_movies(self, text: Tensor, k: int | None = None, chunk: int = 4096,
                   exclude: Tensor | None = None, genres: Tensor | None = None) -> Tensor:
        r"""Representations [n, hidden] of movies the graph does not hold, from their text embeddings [n, D].

        A new movie enters as the graph's movies do (:math:`\mathbf{W}_m[\mathbf{x}^{text} \| \mathbf{0}]`,
        no poster) and is linked, like them, to its ``k`` nearest graph movies by text cosine (the graph's
        ``text_knn`` relation; ``k`` defaults to that relation's mean in-degree, ``k=0`` links nothing). The
        trained encoder then runs on it inductively (:meth:`GATEncoder.inductive`): it reads the learned
        representations of its text neighbours, which carry their dialogues, ratings and knowledge-graph links.
        Without the relation (or with the MLP encoder) it is an isolated node. ``exclude`` [n] (a graph movie
        node per row, or -1) is never linked to that row: a graph movie encoded as if it were new. ``genres``
        [2, G] (optional: genre node, row) links rows to their genres through the graph's genre -> movie relation,
        as the graph's movies are. Eval mode, no gradient.
        """
        self.eval()
        parts = [text.float()] if self.cfg.text_features else []
        if self.use_poster:
            parts += [text.new_zeros(len(text), self.movie_poster.shape[1]), text.new_zeros(len(text), 1)]
        x = self.movie_in(torch.cat(parts, dim=1)) if parts else text.new_zeros(len(text), self.cfg.hidden)
        if not isinstance(self.encoder, GATEncoder):
            return x + self.encoder["movie"](x)
        rel = next((et for et in self.edge_types if et[1] == "text_knn"), None)
        links: dict[tuple[str, str, str], Tensor] = {}
        if rel is not None and self.cfg.text_features:
            ei = getattr(self, "ei_" + "__".join(rel))
            if k is None:
                k = max(1, round(ei.shape[1] / max(1, int(torch.unique(ei[1]).numel()))))
            z, q = nn.functional.normalize(self.movie_text, dim=1), nn.functional.normalize(text.float(), dim=1)
            src, dst = [], []
            for s in range(0, len(q) if k else 0, chunk):  # [chunk, n_movies] similarities at a time
                sim = q[s:s + chunk] @ z.T
                if exclude is not None:
                    ex = exclude[s:s + chunk]
                    sim[torch.arange(len(sim))[ex >= 0], ex[ex >= 0]] = -2.0
                sim, nb = sim.topk(min(k, len(z)), dim=1)
                keep = sim > 0  # as the graph's kNN: no link to a movie of non-positive similarity
                src.append(nb[keep])
                dst.append(torch.arange(s, s + len(nb)).unsqueeze(1).expand_as(nb)[keep])
            links[rel] = torch.stack([torch.cat(src), torch.cat(dst)]) if src else torch.zeros(2, 0, dtype=torch.long)
        if genres is not None and self.genre_relation is not None:
            links[self.genre_relation] = genres.long()
        states: list[dict[str, Tensor]] = []
        self.encode_nodes(states=states)
        return self.encoder.inductive(states, x, "movie", links)

    @property
    def genre_relation(self) -> tuple[str, str, str] | None:
        """The graph's genre -> movie relation (how a movie reads its genres), or None without genres."""
        return next((et for et in self.edge_types if et[0] == "genre" and et[2] == "movie"), None)

    def items(self, h: dict[str, Tensor]) -> Tensor:
        """Candidate representations [n_candidates, hidden]."""
        return self.item(h["movie"][self.candidates])

    @staticmethod
    def node_table(h: dict[str, Tensor]) -> Tensor:
        """Node representations of :data:`POOLED_TYPES`, concatenated in that order."""
        return torch.cat([h[t] for t in POOLED_TYPES if t in h], dim=0)

    # ----------------------------------------------------------------- query side
    def preference(self, table: Tensor, qb: QueryBatch) -> tuple[Tensor, Tensor]:
        """The fused preference vector [B, hidden] and the pooling weights of the query's node set."""
        q = self.query(qb.text)
        prior = qb.prior if self.cfg.pooling == "attention" else None
        g, alpha = self.pool(table[qb.nodes], q, qb.batch, prior, qb.role if self.cfg.pool_roles else None,
                             qb.recency if self.cfg.pool_recency else None)
        return q + self.fuse(torch.cat([q, g, q * g], dim=-1)), alpha

    def score(self, p: Tensor, items: Tensor, qb: QueryBatch) -> Tensor:
        """Scores [B, n_candidates] of preference vectors ``p`` against candidate representations ``items``."""
        return self.score_with_weights(p, items, qb)[0]

    def score_with_weights(self, p: Tensor, items: Tensor, qb: QueryBatch) -> tuple[Tensor, Tensor | None]:
        r"""Scores [B, n_candidates] and the modality gate's weights :math:`\alpha` [B, n_candidates, K] (None
        with the gate off; 0 for a modality a movie lacks, summing to 1 over the ones it has)."""
        alpha = None
        if self.gate is None:
            s = p @ items.T + self.bias
        else:
            s, alpha = self.gate.score(p, items, self.modal_table(), self.mod_mask)
            s = s + self.bias
        if self.cfg.text_features:
            s = s + self.text_weight * (nn.functional.normalize(qb.text, dim=1) @ self.cand_text.T)
        named = self.mention_term(qb, s.shape[1]) if qb.mentioned.numel() else None
        if named is not None:
            s = s + self.mention_bonus * named
        if self.memory is not None and self.memory.active:
            s = s + self.memory(qb.anchors, qb.anchor_batch, s.shape[0])
        if self.neighbours is not None and self.neighbours.active:
            s = s + self.neighbours(qb.text, qb.anchors, qb.anchor_batch)
        if bool(self.unlisted.any()):  # before the cap, so that an unlisted id is never the best other one
            s = s - UNLISTED_PENALTY * self.unlisted
        if named is not None and bool(self.mention_cap):
            s = self.below_top(s, named)
        return s, alpha

    @staticmethod
    def below_top(s: Tensor, named: Tensor) -> Tensor:
        r"""``s`` [B, n] with each row's named candidates (``named`` > 0) that score at or above its best other
        candidate :math:`s^* = \max_{j \notin N} s_j` placed just below it, in their own order:
        :math:`s_j \leftarrow s^* - 10^{-3} - 10^{-4} (\max_{i \in N} s_i - s_j)`. With a large bonus the
        named movies then fill ranks 2, 3, ... instead of 1, 2, ...: the protocols count a movie named again
        as a hit, yet the model's best new movie is the likelier first answer."""
        named = named > 0
        other = s.masked_fill(named, float("-inf")).amax(1, keepdim=True)
        top = s.masked_fill(~named, float("-inf")).amax(1, keepdim=True)
        over = named & (s >= other) & other.isfinite()
        return torch.where(over, other - 1e-3 - 1e-4 * (top - s), s)

    @staticmethod
    def mention_term(qb: QueryBatch, n_candidates: int) -> Tensor:
        r"""[B, n_candidates]: 1 for the candidates each query names, the term :math:`\beta` weighs."""
        term = torch.zeros(len(qb), n_candidates, device=qb.mentioned.device)
        term[qb.mentioned_batch, qb.mentioned] = 1.0
        return term

    def forward(self, qb: QueryBatch, h: dict[str, Tensor] | None = None) -> Tensor:
        """Scores [B, n_candidates]: one full pass over the graph, or over the node representations ``h`` of an
        earlier pass (historical embeddings: no gradient reaches the encoder then)."""
        h = self.encode_nodes() if h is None else h
        p, _ = self.preference(self.node_table(h), qb)
        return self.score(p, self.items(h), qb)

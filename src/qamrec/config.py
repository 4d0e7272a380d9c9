"""One typed configuration object for the whole package.

Values come, in rising priority, from the defaults below, ``QAMREC_*`` environment variables
(``QAMREC_HOME``; nested fields as ``QAMREC_DATA__SOURCE``) and ``--set key=value`` overrides on the
command line (``--set data.synth_seed=7``). Paths are relative to the working directory or ``~``-expanded;
nothing in the code is absolute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qamrec.errors import QamrecError

__all__ = ["BENCHMARK_HELDOUT", "LEGACY_MODEL_SETTINGS", "LEGACY_TRAIN_SETTINGS", "DataConfig", "FeatureConfig",
           "GraphConfig", "MSCRSConfig", "ModelConfig", "TrainConfig", "SampledConfig", "RefineConfig", "ServeConfig",
           "Config", "load_config", "saved_config"]


#: the share of ReDial's published validation dialogues that the benchmark commands hold out for testing when
#: no test file is given (``graph.heldout_fraction``); with ``--test FILE`` they train on everything else
BENCHMARK_HELDOUT = 0.3


class DataConfig(BaseModel):
    """Where data comes from and how it is prepared."""

    model_config = ConfigDict(extra="forbid")

    source: Path | None = Field(
        default=None, description="local folder laid out like shared/data, used instead of the internet"
    )
    verify: bool = Field(default=True, description="check SHA256 digests of fetched files")
    title_match_threshold: float = Field(
        default=0.92, ge=0.0, le=1.0, description="min. normalized-title similarity for a fuzzy catalog link"
    )


class FeatureConfig(BaseModel):
    """Pretrained encoders (loaded offline) and their embedding cache."""

    model_config = ConfigDict(extra="forbid")

    text_model: str = Field(default="all-MiniLM-L6-v2",
                            description="sentence-transformers model: the packaged default or a local folder")
    batch_size: int = Field(default=64, ge=1)
    posters: bool = Field(default=True, description="encode posters with EfficientNet-Lite0")


class GraphConfig(BaseModel):
    """What ``graph build`` puts into the heterogeneous graph."""

    model_config = ConfigDict(extra="forbid")

    ratings: list[str] = Field(default=["movielens-small", "movielens-100k"],
                               description="prepared MovieLens rating tables whose users become user nodes")
    tags: bool = True
    kg: bool = Field(default=True, description="DBpedia entities and movie-entity relations")
    dialogues: bool = Field(default=True, description="training dialogues as nodes with their mentions")
    comention_min: int = Field(default=1, ge=1, description="co-mentions needed for a movie-movie edge")
    text_knn: int = Field(default=10, ge=0, description="text-similarity neighbours per movie (0: none)")
    poster_knn: int = Field(default=10, ge=0, description="poster-similarity neighbours per movie (0: none)")
    heldout_fraction: float = Field(default=0.0, ge=0.0, lt=1.0,
                                    description="share of the published validation dialogues held out for testing "
                                                "when they are also the training pool (ReDial). 0: train on all "
                                                "(the product); the benchmark commands hold out "
                                                "BENCHMARK_HELDOUT when no --test FILE is given")


class MSCRSConfig(BaseModel):
    """The MSCRS baseline (``--model mscrs``, :mod:`qamrec.models.mscrs`): its semantic graphs and sizes."""

    model_config = ConfigDict(extra="forbid")

    knn: int = Field(default=10, ge=1, description="neighbours per item in the text and image similarity graphs")
    fusion: float = Field(default=0.5, ge=0.0, le=1.0,
                          description="lambda: weight of the text graph against the image graph (1: text only)")
    comention_min: int = Field(default=1, ge=1, description="training dialogues two items must share for a "
                                                            "collaborative edge")
    layers: int = Field(default=3, ge=0, description="LightGCN layers of each semantic graph")
    hidden: int = Field(default=128, ge=8)
    bases: int = Field(default=8, ge=1, description="R-GCN basis matrices")
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    features: bool = Field(default=False, description="add a linear map of the frozen text embeddings to the "
                                                      "free item / entity embeddings (not in MSCRS)")


#: what a model saved before these settings existed did (not always today's default): loading an old run and
#: deciding whether it can be reused read its missing settings from here
LEGACY_MODEL_SETTINGS: dict[str, Any] = {"shared_bias": False, "pool_roles": False, "id_embedding": False,
                                         "attention": "gat", "pool_recency": 0, "comention": False,
                                         "neighbours": False, "mention_choice": False,
                                         "mention_cap": False, "one_id_per_movie": False}
#: the same for the training settings: what a run saved before a setting existed did
LEGACY_TRAIN_SETTINGS: dict[str, Any] = {"merge_turns": False}


class ModelConfig(BaseModel):
    """The query-aware GAT recommender and its ablations."""

    model_config = ConfigDict(extra="forbid")

    hidden: int = Field(default=64, ge=8)
    layers: int = Field(default=2, ge=0)
    heads: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.2, ge=0.0, lt=1.0)
    encoder: str = Field(default="gat", pattern="^(gat|mlp)$", description="gat, or mlp (no graph)")
    attention: str = Field(default="gat", pattern="^(gat|gatv2)$", description="the GAT's attention: gat (static, "
                           "Velickovic et al.) or gatv2 (dynamic, Brody et al.)")
    pooling: str = Field(default="attention", pattern="^(attention|mean)$")
    pool_roles: bool = Field(default=False, description="the pooling's attention knows each member's role in the "
                             "query (named movie, named entity, phrase in the text, retrieved by text)")
    pool_recency: int = Field(default=0, ge=0, description="recency positions of the named movies and entities "
                              "that get their own term in the pooling's attention (0: off)")
    text_features: bool = True
    poster_features: bool = True
    id_embedding: bool = Field(default=True, description="a free embedding per movie node added to its content "
                                                          "input (starts at zero: a movie no example names keeps "
                                                          "its content representation)")
    id_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="in training, the share of movies whose "
                              "free embedding is dropped at each encoder pass (DropoutNet): the content path "
                              "learns to rank movies no example names and movies outside the graph")
    cold_dropout: float = Field(default=0.0, ge=0.0, lt=1.0, description="in training, the share of movies made "
                                "cold at each encoder pass: no free embedding, no incoming edge, as a movie "
                                "outside the graph is encoded (DropoutNet at the node level)")
    comention: bool = Field(default=True, description="add an item-to-item memory of the training dialogues' "
                            "co-mentions with the movies the query names, its weight chosen on dev after training "
                            "(models/memory.py)")
    comention_train: bool = Field(default=False, description="learn the co-mention memory's weight in training, "
                                  "each example's own dialogue left out of the memory (then chosen on dev again)")
    neighbours: bool = Field(default=False, description="add a vote of the training examples whose contexts are "
                             "most like the query, for their answers, its weight chosen on dev after training "
                             "(models/neighbours.py; off: its dev gain did not hold on ReDial's test, README)")
    mention_choice: bool = Field(default=True, description="after training, set the bonus of the movies the "
                                 "query names on dev: the learned one or a grid, by NDCG@10 with a standard-error "
                                 "guard (the protocols count a movie named again as a hit; the service never "
                                 "recommends a movie the person named)")
    mention_cap: bool = Field(default=True, description="the mention choice also tries each bonus with the named "
                              "movies kept below the best other movie (ranks 2, 3, ... instead of 1, 2, ...)")
    one_id_per_movie: bool = Field(default=True, description="list a movie the dataset names by several entity "
                                   "ids under the one the test file's training answers use most, its other ids "
                                   "below every candidate (models/listing.py); false: every id, alike")
    neighbours_k: int = Field(default=200, ge=1, description="training examples voting in model.neighbours")
    retrieved: int = Field(default=10, ge=0, description="movies retrieved by text similarity into the query's set")
    item_prior: bool = Field(default=False, description="each candidate's bias predicted from its popularity "
                                                       "features (MovieLens ratings, dialogue mentions) and text, "
                                                       "shared per movie, plus a small free residual; false: a free "
                                                       "bias (see shared_bias)")
    shared_bias: bool = Field(default=True, description="the free bias is one per movie, shared by the dataset's "
                                                        "entities that name it (UniCRS names some films twice); "
                                                        "false: one per candidate entity")
    bias_l2: float = Field(default=1e-4, ge=0.0, description="l2 penalty on the item prior's free residuals")
    modality_gate: bool = Field(default=False, description="MSMRec-style query-conditioned mixture of the movies' "
                                                           "modalities (plot, cast, crew, genres, tags, poster) in "
                                                           "the scorer; the graph then carries per-modality "
                                                           "embeddings")
    mscrs: MSCRSConfig = Field(default_factory=MSCRSConfig, description="the MSCRS baseline (--model mscrs)")


class TrainConfig(BaseModel):
    """Optimisation."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(default=12, ge=1)
    init_seed: int | None = Field(default=None, description="seed of the model's initialisation and batch order "
                                  "(default: the run's seed, which also draws the data split); members of an "
                                  "ensemble on one split differ in it")
    batch_size: int = Field(default=256, ge=1)
    graph_every: int = Field(default=4, ge=1, description="run the graph encoder with gradients on every n-th "
                                                          "batch; the others reuse its node representations "
                                                          "(1: every batch)")
    lr: float = Field(default=1e-3, gt=0)
    schedule: Literal["constant", "cosine"] = Field(
        default="constant", description="learning rate over the run: constant, or cosine decay to 0 at the last "
                                        "epoch (after the warmup)")
    warmup: float = Field(default=0.0, ge=0.0, lt=1.0, description="share of the run's steps over which the "
                                                                    "learning rate rises linearly from 0")
    weight_decay: float = Field(default=1e-2, ge=0)
    patience: int = Field(default=4, ge=1, description="epochs without a better dev NDCG@10 before stopping")
    ema: float = Field(default=0.0, ge=0.0,
                       description="half-life in epochs of a moving average of the weights, updated every step "
                                   "and bias-corrected (the initial weights take no part); dev metrics, early "
                                   "stopping and the kept model use the average (0: the weights themselves)")
    dev_fraction: float = Field(default=0.1, ge=0.0, lt=1.0,
                                description="share of training dialogues held out for early stopping")
    threads: int = Field(default=0, ge=0, description="torch threads (0: torch's default)")
    seeker_targets: bool = Field(default=False, description="also train on the movies seekers mention "
                                                            "(datasets given as raw turns)")
    merge_turns: bool = Field(default=True, description="join consecutive messages of one speaker into one turn "
                                                        "before making examples from raw turns, as UniCRS "
                                                        "processed the test files (false: one turn a message)")
    dialogue_fraction: float = Field(default=1.0, gt=0.0, le=1.0,
                                     description="train on a seeded share of the training dialogues (graph "
                                                 "and examples; dev and test stay): learning curves")
    extra_dialogues: bool = Field(default=True, description="train on every training dialogue the data has "
                                                           "(ReDial: train_extra/ text dialogues and movie-list "
                                                           "conversations); false: only the published validation "
                                                           "subsets (the 'no new data' ablation)")
    transfer: list[str] = Field(default=[], description="other CRS datasets whose training examples are added, "
                                                        "their entities mapped by DBpedia URI or catalog movie")
    pretrain: int = Field(default=0, ge=0, description="pseudo-requests over the catalog to pretrain the query "
                                                       "path and the item side on before the dialogues (0: none; "
                                                       "qamrec.train.pretrain)")
    pretrain_users: int = Field(default=0, ge=0, description="MovieLens users as pseudo-conversations ('I liked A, B "
                                                             "and C.' -> another movie they liked) to pretrain on")
    pretrain_epochs: int = Field(default=2, ge=1, description="passes over the pseudo-requests")


class SampledConfig(BaseModel):
    """Mini-batch link-prediction training on a large user-movie graph (``qamrec train --dataset movielens-*``,
    :mod:`qamrec.train.sampled`): neighbour sampling, negatives, the model's size, validation."""

    model_config = ConfigDict(extra="forbid")

    fanouts: list[int] = Field(default=[10, 5], min_length=1,
                               description="neighbours sampled per relation and hop (one GAT layer per hop)")
    batch_size: int = Field(default=1024, ge=1, description="seed (user, movie) edges per step over all ranks "
                                                            "(each of W ranks takes batch_size / W)")
    negatives: int = Field(default=1, ge=1, description="random movies per positive edge (same user)")
    loss: str = Field(default="bpr", pattern="^(bpr|bce)$", description="bpr: Bayesian personalized ranking; "
                                                                       "bce: binary cross-entropy")
    epochs: int = Field(default=3, ge=1)
    max_batches: int = Field(default=0, ge=0, description="at most this many steps per epoch (0: every edge)")
    lr: float = Field(default=3e-3, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    patience: int = Field(default=2, ge=1, description="epochs without a better validation NDCG@10 before stopping")
    hidden: int = Field(default=64, ge=8)
    heads: int = Field(default=2, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    id_embedding: bool = Field(default=True, description="a learned embedding per movie besides its text features")
    text_features: bool = Field(default=True, description="the movies' text embeddings as input (when the graph "
                                                          "has them)")
    val_users: int = Field(default=2000, ge=0, description="users whose held-out latest rating is ranked against "
                                                           "the whole catalog after each epoch (a fixed sample)")
    eval_batch_size: int = Field(default=2048, ge=1, description="nodes per batch when embedding the catalog")


class RefineConfig(BaseModel):
    """Multi-round refinement (MAGUS-style label propagation over the movie–word graph)."""

    model_config = ConfigDict(extra="forbid")

    mode: str = Field(default="propagation", pattern="^(propagation|naive|none)$",
                      description="propagation: feedback spreads over the graph; naive: rejected movies are only "
                                  "removed; none: feedback is stored but ignored")
    damping: float = Field(default=0.85, ge=0.0, lt=1.0, description="personalized-PageRank damping")
    steps: int = Field(default=10, ge=1, le=100, description="propagation steps")
    # weight and negative were chosen on simulated users from ReDial training (dev) dialogues, never the test ones
    weight: float = Field(default=6.0, ge=0.0, description="weight of propagated labels (scaled to a maximum of "
                                                           "1) vs the standardized scores")
    negative: float = Field(default=0.1, ge=0.0, description="size of a negative label (disliked movie, rejected "
                                                             "refinement) relative to a positive one")
    suggestions: int = Field(default=3, ge=0, le=4, description="refinements suggested per response")
    popularity: float = Field(default=0.5, ge=0.0, le=1.0,
                              description="weight of the model's learned popularity bias in served rankings "
                                          "(1: the ranking as trained and evaluated; lower favours the request)")
    min_word_movies: int = Field(default=2, ge=1, description="a word must describe this many candidates")
    # chosen on generated requests of seed 1 (0: precision@10 0.949 on two-genre requests, 1: 0.966, 2: 0.966)
    every_concept: float = Field(default=1.0, ge=0.0, description="added to the standardized score of a movie of "
                                                               "every kind a request wants (two or more kinds)")


class ServeConfig(BaseModel):
    """The HTTP service.

    Overload: each worker process runs at most ``max_inflight`` requests at once; up to ``max_queue`` more wait
    for a slot, each at most ``queue_timeout`` seconds. A request beyond that (queue full, or waited too long) is
    answered at once with 503 and ``Retry-After: <retry_after>`` instead of joining an unbounded queue, so
    latency stays bounded and the client knows to come back. ``/health`` is never refused. The limits hold per
    process: ``workers=N`` admits N times as many.

    Hostile input: bodies over ``max_body_bytes`` get 413, with a ``Content-Length`` or streamed in chunks
    (counted as they arrive). With ``api_key`` set every route but ``/health`` needs it (``X-API-Key``, or the
    cookie the page sets after being opened once as ``/?api_key=KEY``).
    """

    model_config = ConfigDict(extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    store: str = Field(default="", description="session store URL (default sqlite:///<home>/sessions.sqlite3)")
    api_key: str | None = Field(default=None, description="when set, every route but /health needs X-API-Key "
                                                          "(or the page's cookie: open /?api_key=KEY once)")
    cors_origins: list[str] = Field(default=[], description="origins allowed by CORS (default: CORS off)")
    max_body_bytes: int = Field(default=65536, ge=1024, description="larger request bodies get 413")
    workers: int = Field(default=1, ge=1, le=64, description="service processes (each loads the model; they "
                                                              "share the session store)")
    catalog: str = Field(default="", description="a prepared MovieLens dataset whose movies extend the served "
                                                 "catalog beyond the graph's candidates (e.g. movielens-32m)")
    item_dtype: str = Field(default="int8", pattern="^(float32|bfloat16|int8)$",
                            description="how the extended catalog is scored: exact float32 or bfloat16 "
                                        "products, or int8 with its best rows re-scored exactly")
    index_rank: int = Field(default=160, ge=0, description="width of the int8 first pass over the extended "
                                                           "catalog (its top singular directions; 0: all "
                                                           "columns); the best rows are re-scored exactly")
    new_movie_genres: bool = Field(default=False, description="a movie of the extended catalog outside the graph "
                                   "is linked to its genres' nodes and encoded by the trained GAT (false: its "
                                   "text alone, an isolated node)")
    new_movie_bias: str = Field(default="median", pattern="^(median|content)$",
                                description="its bias: the candidates' median, or regressed on the text of the "
                                            "graph's movies (content)")
    comention: bool = Field(default=True, description="add the model's co-mention memory (model.comention, with "
                            "the weight chosen on dev) for the movies a request names (false: the model without it)")
    neighbours: bool = Field(default=True, description="add the model's neighbour vote (model.neighbours, with "
                             "the setting chosen on dev) for every request (false: the model without it)")
    reply_templates: int = Field(default=0, ge=0, description="at most this many recommender utterances in the "
                                                             "reply index, spread evenly over the dialogues (0: "
                                                             "all; the tests keep it small)")
    query_cache: int = Field(default=256, ge=0, description="recent query embeddings kept (feedback on a "
                                                            "conversation re-scores the same text; 0: none)")
    threads: int = Field(default=0, ge=0, description="torch threads per process while serving (0: torch's "
                                                      "default; 1 lets concurrent requests use separate cores)")
    max_inflight: int = Field(default=8, ge=1, le=1000, description="requests one worker process runs at "
                                                                    "once (the rest wait or get 503)")
    max_queue: int = Field(default=32, ge=0, le=10000, description="requests one worker process lets wait for "
                                                                   "a slot; more get 503 at once")
    queue_timeout: float = Field(default=5.0, gt=0, le=600, description="seconds a request may wait for a slot "
                                                                         "before it gets 503")
    retry_after: int = Field(default=1, ge=0, le=3600, description="the Retry-After (seconds) of a 503")
    ann_exact_max: int = Field(default=300_000, ge=0, description="large-catalog index (qamrec.serve.ann): "
                                                                  "exact search up to this many items, FAISS IVF "
                                                                  "above")
    ann_nprobe: int = Field(default=32, ge=1, description="IVF cells scanned per query by the FAISS index")


class Config(BaseSettings):
    """The resolved configuration of a run."""

    model_config = SettingsConfigDict(env_prefix="QAMREC_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default=Path("~/.cache/qamrec"), description="data home: fetched, prepared, runs")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    graph: GraphConfig = Field(default_factory=GraphConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sampled: SampledConfig = Field(default_factory=SampledConfig)
    refine: RefineConfig = Field(default_factory=RefineConfig)
    serve: ServeConfig = Field(default_factory=ServeConfig)

    @field_validator("home")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def raw_dir(self) -> Path:
        """Fetched source files, laid out like shared/data."""
        return self.home / "raw"

    @property
    def prepared_dir(self) -> Path:
        """Typed tables (Parquet) made by ``data prepare``."""
        return self.home / "prepared"

    @property
    def cache_dir(self) -> Path:
        """Embedding caches (keyed by model name and content hash)."""
        return self.home / "cache"

    @property
    def graph_dir(self) -> Path:
        """Built graphs, one folder per dataset."""
        return self.home / "graphs"

    @property
    def runs_dir(self) -> Path:
        """Trained run directories made by ``demo`` (``train --out`` can put them anywhere)."""
        return self.home / "runs"

    @property
    def store_url(self) -> str:
        """Where sessions live: ``serve.store``, or SQLite under the data home."""
        return self.serve.store or f"sqlite:///{self.home / 'sessions.sqlite3'}"

    def with_benchmark_heldout(self) -> Config:
        """This configuration for a benchmark without a test file: :data:`BENCHMARK_HELDOUT` of the published
        validation dialogues held out for testing, unless ``graph.heldout_fraction`` already holds some out."""
        if self.graph.heldout_fraction > 0:
            return self
        return self.with_overrides([f"graph.heldout_fraction={BENCHMARK_HELDOUT}"])

    def with_overrides(self, overrides: list[str]) -> Config:
        """Return a copy with ``key=value`` overrides applied (dotted keys for nested fields)."""
        data: dict[str, Any] = self.model_dump()
        for item in overrides:
            if "=" not in item:
                raise QamrecError(f"--set {item!r}: expected key=value, e.g. --set data.verify=false")
            key, value = item.split("=", 1)
            node = data
            parts = key.strip().split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise QamrecError(f"--set {item!r}: unknown config section '{p}'")
                node = node[p]
            if parts[-1] not in node:
                raise QamrecError(f"--set {item!r}: unknown config key '{key}' (known: {sorted(node)})")
            if isinstance(node[parts[-1]], list):  # a list is given comma-separated; "" is the empty list
                node[parts[-1]] = [v.strip() for v in value.split(",") if v.strip()]
            else:
                node[parts[-1]] = None if value.lower() in {"none", "null"} else value
        try:
            return Config.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise QamrecError(f"--set {loc}: {err['msg']}") from None


def load_config(overrides: list[str] | None = None, **fields: Any) -> Config:
    """Defaults + environment, then explicit fields, then ``key=value`` overrides."""
    try:
        cfg = Config(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        raise QamrecError(f"config {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    return cfg.with_overrides(overrides or [])


def saved_config(saved: dict[str, Any], home: Path | None = None, qamrec: bool = True) -> Config:
    """The configuration a run was trained with, from its ``config.json`` (read as ``saved``), in data home
    ``home`` (default: the saved one). A setting the run predates counts as what it did then
    (:data:`LEGACY_TRAIN_SETTINGS`, and :data:`LEGACY_MODEL_SETTINGS` for a ``qamrec`` run), else as today's
    default."""
    then = {k: v for k, v in saved.items() if k != "dataset"}
    then["train"] = LEGACY_TRAIN_SETTINGS | saved.get("train", {})
    if qamrec:
        then["model"] = LEGACY_MODEL_SETTINGS | saved.get("model", {})
    return Config.model_validate(then if home is None else then | {"home": home})

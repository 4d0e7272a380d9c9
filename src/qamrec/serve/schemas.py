"""The HTTP API's request and response bodies (pydantic); OpenAPI at ``/docs`` is generated from them."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_QUERY_CHARS", "MAX_TITLES", "RecommendRequest", "Reason", "Movie", "Attended", "Suggestion",
    "Recommendations", "SessionCreated", "MessageRequest", "FeedbackRequest", "FeedbackAck", "SessionState",
    "Message", "FeedbackEvent", "Health",
]

MAX_QUERY_CHARS = 2000
MAX_TITLES = 50

_Strict = ConfigDict(extra="forbid")
Title = Field(min_length=1, max_length=300)


class RecommendRequest(BaseModel):
    """One request: free text plus titles the person liked or disliked (resolved with fuzzy matching)."""

    model_config = _Strict
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["funny heist movie with a great ensemble"])
    liked: list[str] = Field(default=[], max_length=MAX_TITLES, examples=[["Ocean's Eleven (2001)"]])
    disliked: list[str] = Field(default=[], max_length=MAX_TITLES)
    k: int = Field(default=10, ge=1, le=100)


class Reason(BaseModel):
    """A node of the query's set that the model attended to and that connects to this movie."""

    kind: Literal["movie", "genre", "tag", "entity", "text", "feedback"]
    label: str
    weight: float = Field(description="the node's pooling attention weight (0..1); text/feedback: a score share")


class Movie(BaseModel):
    id: int = Field(description="catalog movie id (the MovieLens movieId where the movie has one)")
    title: str
    year: int | None
    genres: list[str]
    poster_url: str | None = Field(description="GET this for the poster; null when there is none")
    score: float
    reasons: list[Reason]
    reason: str = Field(description="the reasons as one short sentence")


class Attended(BaseModel):
    """One member of the query's node set and its attention weight (they sum to 1)."""

    kind: Literal["movie", "genre", "tag", "entity"]
    label: str
    weight: float


class Suggestion(BaseModel):
    """A suggested refinement: a combination of words (genres, tags, decades, people, subjects)."""

    id: int
    words: list[str]
    label: str = Field(description="the words joined with ' · '")


class Recommendations(BaseModel):
    query: str
    movies: list[Movie]
    attended: list[Attended] = Field(description="what the model attended to, highest weight first")
    suggestions: list[Suggestion] = []
    resolved: dict[str, int] = Field(default={}, description="titles given -> the catalog id they resolved to")
    round: int = 0


class SessionCreated(BaseModel):
    id: str


class MessageRequest(BaseModel):
    model_config = _Strict
    text: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: int = Field(default=10, ge=1, le=100)


class FeedbackRequest(BaseModel):
    """Either ``movie_id`` + ``value`` in liked/disliked/seen, or ``suggestion_id`` + accepted/rejected."""

    model_config = _Strict
    movie_id: int | None = Field(default=None, ge=0, le=2**62)
    suggestion_id: int | None = Field(default=None, ge=0, le=2**62)
    value: Literal["liked", "disliked", "seen", "accepted", "rejected"]
    k: int = Field(default=10, ge=1, le=100)


class FeedbackAck(BaseModel):
    id: int = Field(description="the stored feedback row")
    recommendations: Recommendations


class Message(BaseModel):
    role: Literal["user"]
    text: str
    at: float


class FeedbackEvent(BaseModel):
    id: int
    target: str = Field(description="movie:<id> or suggestion:<id>")
    value: str
    at: float


class SessionState(BaseModel):
    id: str
    created: float
    messages: list[Message]
    feedback: list[FeedbackEvent]
    recommendations: Recommendations | None


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    dataset: str
    candidates: int

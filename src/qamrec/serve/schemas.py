"""The HTTP API's request and response bodies (pydantic); OpenAPI at ``/docs`` is generated from them."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "MAX_QUERY_CHARS", "MAX_TITLES", "MAX_ID", "RecommendRequest", "Reason", "Movie", "Attended", "Suggestion",
    "Recommendations", "NamedMovie", "YearSpan", "Understood", "SessionCreated", "MessageRequest",
    "FeedbackRequest", "MovieFeedback", "SuggestionFeedback",
    "Title", "Count", "Id", "SESSION_ID_PATTERN", "FeedbackAck", "SessionState",
    "Message", "FeedbackEvent", "Health", "ValidationIssue", "Problem", "ERROR_RESPONSES",
]

MAX_QUERY_CHARS = 2000
MAX_TITLES = 50
#: the largest movie or suggestion id (the largest integer a browser's JSON numbers hold exactly)
MAX_ID = 2**53 - 1

_Strict = ConfigDict(extra="forbid")
#: a movie title as a person types it (resolved against the catalog with fuzzy matching)
Title = Annotated[str, Field(min_length=1, max_length=300)]


def _json_number(value: object) -> object:
    """Only JSON numbers are integers here: pydantic's lax mode would also take true/false and "5"."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{type(value).__name__} is not an integer")
    return value


#: how many movies to answer with
Count = Annotated[int, Field(ge=1, le=100), BeforeValidator(_json_number)]
#: a movie or suggestion id
Id = Annotated[int, Field(ge=0, le=MAX_ID), BeforeValidator(_json_number)]
#: a session id as :meth:`SessionStore.create` makes them (URL-safe)
SESSION_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class RecommendRequest(BaseModel):
    """One request: free text plus titles the person liked or disliked (resolved with fuzzy matching)."""

    model_config = _Strict
    query: str = Field(min_length=1, max_length=MAX_QUERY_CHARS, examples=["funny heist movie with a great ensemble"])
    liked: list[Title] = Field(default=[], max_length=MAX_TITLES, examples=[["Ocean's Eleven (2001)"]])
    disliked: list[Title] = Field(default=[], max_length=MAX_TITLES)
    k: Count = 10


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
    modality_weights: dict[str, float] | None = Field(
        default=None, description="the model's modality gate (model.modality_gate): how much each of this movie's "
                                  "modalities (plot, cast, crew, genres, tags, poster) weighed in its score (they "
                                  "sum to 1 over the ones it has); null without the gate")


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


class NamedMovie(BaseModel):
    """A catalog movie the request named."""

    id: int = Field(description="catalog movie id")
    title: str = Field(description="its title and year as the catalog has them")


class YearSpan(BaseModel):
    """Release years a request asked for ("1950s", "from the 80s", "in 1994", "before 1970", "recent")."""

    label: str = Field(examples=["1950s"])
    start: int | None = Field(description="first year (inclusive); null: open")
    end: int | None = Field(description="last year (inclusive); null: open")
    hard: bool = Field(description="true: movies outside rank below every movie inside; false (\"classic\"): "
                                   "movies inside are only lifted")


class Understood(BaseModel):
    """What the request's words were understood to say, beyond their embedding: the movies it names, the kinds
    of movies, years and people it asks for or against. Wanted kinds, years and people lift the movies that have
    them; years and people asked for, and everything excluded, are hard: a movie that breaks one ranks below
    every movie that does not (the list is never empty). Named movies are not recommended back."""

    summary: str = Field(description="all of it as one line; empty when nothing was understood",
                         examples=["like Inception (2010) · 1950s · not romance"])
    anchors: list[NamedMovie] = Field(default=[], description="movies named as liked or as a model (\"like "
                                      "Inception\", \"I loved Heat\"): anchors of the query, like ``liked``")
    seen: list[NamedMovie] = Field(default=[], description="movies named as already seen (\"I already saw X\")")
    disliked: list[NamedMovie] = Field(default=[], description="movies named as disliked (\"I hated X\")")
    genres: list[str] = Field(default=[], description="kinds of movies asked for (\"funny\" -> comedy, "
                              "\"whodunit\" -> mystery, heist, film noir ...)", examples=[["comedy", "heist"]])
    excluded: list[str] = Field(default=[], description="kinds of movies ruled out (\"no romance\", \"nothing "
                                "gory\", \"not animated\")", examples=[["romance"]])
    years: list[YearSpan] = Field(default=[], description="release years asked for")
    excluded_years: list[YearSpan] = Field(default=[], description="release years ruled out")
    people: list[str] = Field(default=[], description="directors, actors or writers asked for (\"with Tom Hanks\", "
                              "\"directed by Nolan\"), as the catalog names them")
    excluded_people: list[str] = Field(default=[], description="people ruled out (\"nothing with X\")")


class Recommendations(BaseModel):
    query: str
    movies: list[Movie]
    attended: list[Attended] = Field(description="what the model attended to, highest weight first")
    suggestions: list[Suggestion] = []
    resolved: dict[str, int] = Field(default={}, description="titles given -> the catalog id they resolved to")
    round: int = 0
    modality_weights: dict[str, float] | None = Field(
        default=None, description="which modality mattered for this query: the mean modality-gate weight over the "
                                  "recommended movies; null when the model has no modality gate")
    understood: Understood | None = Field(
        default=None, description="what the request's words were understood to say (titles, kinds of movies, "
                                  "years, people) and how that shaped the list; null when it was not parsed")
    reply: str = Field(
        default="", description="the system's answer in words: an acknowledgement of the message or feedback, a "
                                "recommendation with reasons taken from the catalog (every fact checked), or a "
                                "clarifying question when the request is vague",
        examples=["Got it, no more horror. How about Heat (1995)? It's directed by Michael Mann and stars Al Pacino "
                  "and Robert De Niro."])


class SessionCreated(BaseModel):
    id: str


class MessageRequest(BaseModel):
    model_config = _Strict
    text: str = Field(min_length=1, max_length=MAX_QUERY_CHARS)
    k: Count = 10


class MovieFeedback(BaseModel):
    """Feedback on a recommended movie."""

    model_config = _Strict
    movie_id: Id
    value: Literal["liked", "disliked", "seen"]
    k: Count = 10


class SuggestionFeedback(BaseModel):
    """Feedback on a suggested refinement of this session."""

    model_config = _Strict
    suggestion_id: Id
    value: Literal["accepted", "rejected"]
    k: Count = 10


#: either ``movie_id`` + liked/disliked/seen, or ``suggestion_id`` + accepted/rejected
FeedbackRequest = MovieFeedback | SuggestionFeedback


class FeedbackAck(BaseModel):
    id: int = Field(description="the stored feedback row")
    recommendations: Recommendations


class Message(BaseModel):
    """A message of the conversation: the person's (``user``) or the system's reply (``system``)."""

    role: Literal["user", "system"]
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


class ValidationIssue(BaseModel):
    """One reason a body or parameter was rejected."""

    loc: list[str | int] = Field(description="where: 'body', 'path' or 'query', then the field")
    msg: str
    type: str


class Problem(BaseModel):
    """Any error answer: ``detail`` says what is wrong (the list of issues of an invalid body or parameter);
    a title the catalog cannot resolve adds ``title`` and the ``closest`` titles."""

    detail: str | list[ValidationIssue]
    title: str | None = None
    closest: list[str] | None = None


def _problem(text: str) -> dict[str, object]:
    return {"model": Problem, "description": text}


#: the error answers every route may give (documented in OpenAPI)
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    400: _problem("the body is not valid JSON in UTF-8 (or nested too deeply to parse)"),
    401: _problem("serve.api_key is set and the request does not carry it"),
    404: _problem("unknown session, movie, suggestion or path"),
    413: _problem("the body is over serve.max_body_bytes"),
    422: _problem("invalid body or parameter, or a title the catalog cannot resolve"),
    503: {**_problem("overloaded: every slot is busy and the queue is full; retry after Retry-After seconds"),
          "headers": {"Retry-After": {"description": "seconds to wait before retrying",
                                      "schema": {"type": "integer"}}}},
}

"""The words a request parser knows: kinds of movies (:class:`Concept`), cues that name titles, negations.

A concept maps the ways people say it ("funny", "whodunit", "gory") to what the graph knows of a movie: catalog
genres (lower case, as the graph stores them), MovieLens tags (exact labels) and, by a regular expression, KG
genre / subject labels ("American heist films").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["Concept", "CONCEPTS", "TITLE_CUES", "NEGATION_CUES", "COMMON_WORDS", "SCOPE_FILLER", "SCOPE_TAIL",
           "SCOPE_JOIN", "PERSON_CUES", "NOT_A_CUE_BEFORE", "concept_phrases", "tag_concepts", "LIKED_AFTER_SEEN"]


@dataclass(frozen=True)
class Concept:
    """A kind of movie: ``label`` as shown, the ``phrases`` that name it, and what a movie of it carries.

    ``weight`` scales the boost a movie of this kind gets when a request asks for it. ``from_tag``: a MovieLens
    tag named as such ("atmospheric", "high school"; :func:`tag_concepts`), which few movies carry.
    """

    label: str
    phrases: tuple[str, ...]
    genres: frozenset[str] = frozenset()
    tags: frozenset[str] = frozenset()
    kg: str | None = None
    weight: float = 1.0
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)
    from_tag: bool = False

    def __post_init__(self) -> None:
        if self.kg is not None:
            object.__setattr__(self, "pattern", re.compile(self.kg, re.IGNORECASE))


def _c(label: str, phrases: str, genres: str = "", tags: str = "", kg: str | None = None,
       weight: float = 1.0) -> Concept:
    split = [p.strip() for p in phrases.split("|") if p.strip()]
    return Concept(label, tuple(split), frozenset(g for g in genres.split("|") if g),
                   frozenset(t for t in tags.split("|") if t), kg, weight)


#: the kinds of movies a request may ask for or against (genre-like ones weigh more: every movie has genres)
CONCEPTS: tuple[Concept, ...] = (
    _c("comedy", "comedy|comedies|funny|hilarious|humorous|comedic|laugh|laughs|lighthearted|light-hearted",
       "comedy", "comedy|funny|very funny|hilarious|dark comedy|black comedy", r"\bcomed", 1.5),
    _c("romance", "romance|romances|romantic|love story|love stories|romcom|rom-com|rom com|romantic comedy",
       "romance", "romance|romantic|love story|romantic comedy", r"\bromance|\bromantic", 1.5),
    _c("horror", "horror|scary|frightening|creepy|spooky|terrifying|horror movie|horror film", "horror",
       "horror|scary|creepy", r"\bhorror", 1.5),
    _c("gore", "gory|gore|bloody|gruesome|slasher|slashers|splatter", "",
       "gore|goretastic|gory|bloody|splatter|slasher|brutal", r"\bslasher|\bsplatter", 1.0),
    _c("violence", "violent|violence|brutal", "", "violence|violent|brutal|graphic violence", None, 1.0),
    _c("action", "action|action-packed|action packed|action heavy|action-heavy|explosions|shoot-em-up",
       "action", "action|action packed", r"\baction", 1.5),
    _c("animation", "animated|animation|cartoon|cartoons|anime|pixar", "animation",
       "animation|animated|anime|pixar|computer animation|disney animated feature", r"\banimat", 1.5),
    _c("sci-fi", "sci-fi|scifi|sci fi|science fiction|science-fiction", "sci-fi",
       "sci-fi|science fiction|scifi", r"science fiction", 1.5),
    _c("film noir", "film noir|film-noir|noir|neo-noir|noirs", "film-noir", "film noir|film-noir|noir|neo-noir",
       r"\bnoir", 1.5),
    _c("musical", "musical|musicals|song and dance", "musical", "musical", r"\bmusical", 1.5),
    _c("mystery", "mystery|mysteries|whodunit|whodunnit|whodunits|detective|murder mystery|sleuth", "mystery",
       "mystery|detective|whodunit|murder mystery", r"\bmystery|\bdetective", 1.5),
    _c("thriller", "thriller|thrillers|suspense|suspenseful", "thriller", "thriller|suspense|tense",
       r"\bthriller", 1.5),
    _c("drama", "drama|dramas|dramatic", "drama", "drama", None, 1.0),
    _c("crime", "crime|gangster|gangsters|mafia|mobster|mobsters", "crime", "crime|gangster|mafia|organized crime",
       r"\bcrime|\bgangster|\bmafia", 1.5),
    _c("heist", "heist|heists|caper|capers|bank robbery", "", "heist|bank robbery|caper|robbery", r"\bheist", 1.5),
    _c("war", "war|war movie|war film|war movies|war films|wartime", "war", "war|world war ii|wwii",
       r"\bwar films", 1.5),
    _c("western", "western|westerns|cowboy|cowboys", "western", "western", r"\bwestern", 1.5),
    _c("documentary", "documentary|documentaries", "documentary", "documentary", r"\bdocumentar", 1.5),
    _c("fantasy", "fantasy|magical|wizards|sword and sorcery", "fantasy", "fantasy|magic", r"\bfantasy", 1.5),
    _c("adventure", "adventure|adventures|adventurous", "adventure", "adventure", r"\badventure", 1.0),
    _c("family", "family-friendly|family friendly|kid-friendly|kid friendly|for kids|for children|kids movie|kids "
       "movies|kids|children|children movie|children movies|family movie|family movies|family film|family films|"
       "for the whole family|for my kids|for the kids|family",
       "children|family", "family|kids|disney", r"\bchildren's films|\bfamily films", 1.5),
    _c("superhero", "superhero|superheroes|comic book|comic-book", "", "superhero|comic book|marvel|dc comics",
       r"\bsuperhero", 1.5),
    _c("feel-good", "feel-good|feel good|uplifting|heartwarming|heart-warming|wholesome", "",
       "feel-good|heartwarming|uplifting|feel good movie|inspirational", None, 1.0),
    _c("mind-bending", "mind-bending|mind bending|mindbending|mind-blowing|mind blowing|trippy|plot twist|twist "
       "ending|twists|psychological", "", "mindfuck|mind-bending|mind-blowing|twist ending|plot twist|twist|"
       "psychological|complicated|nonlinear|surreal|dreamlike|thought-provoking", r"\bpsychological", 1.0),
    _c("ensemble", "ensemble|ensemble cast|big cast|all-star cast|star-studded", "", "ensemble cast", None, 1.0),
    _c("thoughtful", "thoughtful|thought-provoking|thought provoking|cerebral|philosophical", "",
       "thought-provoking|thought provoking|philosophical|cerebral|intellectual", None, 1.0),
    _c("biopic", "biopic|biopics|biography|biographical|true story", "biography",
       "biography|biopic|true story|based on a true story", r"\bbiographical", 1.0),
    _c("zombies", "zombie|zombies", "", "zombies|zombie", r"\bzombie", 1.5),
    _c("time travel", "time travel|time-travel", "", "time travel", r"\btime travel", 1.5),
    _c("christmas", "christmas|holiday movie", "", "christmas", r"\bchristmas", 1.5),
    _c("sports", "sports|sport movie|boxing|baseball|football", "", "sports|boxing|baseball|football",
       r"\bsports", 1.0),
)


def concept_phrases(concepts: tuple[Concept, ...] = CONCEPTS) -> dict[tuple[str, ...], Concept]:
    """Phrase (its lower-case words) -> concept."""
    return {tuple(p.lower().split()): c for c in concepts for p in c.phrases}


#: cue phrases before a title and what they say of it: ``like`` (an anchor), ``seen`` or ``disliked``
TITLE_CUES: dict[tuple[str, ...], str] = {tuple(k.split()): v for k, v in {
    "like": "like", "likes": "like", "liked": "like", "love": "like", "loved": "like", "loves": "like",
    "enjoyed": "like", "enjoy": "like", "similar to": "like", "as good as": "like", "in the vein of": "like",
    "such as": "like", "reminds me of": "like", "along the lines of": "like", "in the style of": "like",
    "fan of": "like", "favorite is": "like", "favourite is": "like", "adored": "like", "same as": "like",
    "the likes of": "like", "such like": "like",
    "seen": "seen", "saw": "seen", "watched": "seen", "already seen": "seen", "already saw": "seen",
    "already watched": "seen", "have seen": "seen", "'ve seen": "seen", "i've seen": "seen",
    "hated": "disliked", "hate": "disliked", "disliked": "disliked", "didn't like": "disliked",
    "did not like": "disliked", "don't like": "disliked", "do not like": "disliked", "didn't enjoy": "disliked",
    "did not enjoy": "disliked", "couldn't stand": "disliked", "can't stand": "disliked",
    "not a fan of": "disliked", "nothing like": "disliked", "unlike": "disliked", "didn't love": "disliked",
    "bored by": "disliked", "not like": "disliked", "not": "disliked", "no": "disliked", "anything but": "disliked",
    "except": "seen", "other than": "seen", "besides": "seen", "apart from": "seen",
}.items()}

#: words before "like" / "seen" that change what follows ("I'd like ...", "haven't seen ...": no title cue)
NOT_A_CUE_BEFORE: frozenset[str] = frozenset(
    "would i'd we'd you'd haven't hasn't never not don't didn't".split())

#: cue phrases that open a negation: the concepts, years and people of their scope are unwanted
NEGATION_CUES: frozenset[tuple[str, ...]] = frozenset(tuple(k.split()) for k in (
    "no", "not", "nothing", "without", "anything but", "except", "except for", "other than", "avoid", "avoiding",
    "skip", "no more", "don't want", "do not want", "dont want", "don't like", "do not like", "don't need",
    "hate", "dislike", "not into", "not a fan of", "nor", "never", "minus", "rather than", "instead of",
    "isn't", "aren't", "shouldn't be", "can't be", "none", "nothing with", "less", "not really into",
    "no thanks to", "but not", "spare me", "not in the mood for", "sick of", "tired of",
))

#: words allowed between a negation cue and what it negates ("nothing too gory", "not a horror")
SCOPE_FILLER: frozenset[str] = frozenset(
    "too much many any more of a an the really very overly so with that's that is are be being particularly "
    "especially from in movies films movie film something anything scenes lots lot at all kind sort type "
    "made set for heavy about".split())
#: words that may follow a negated term ("not action heavy", "no horror movies please")
SCOPE_TAIL: frozenset[str] = frozenset(
    "heavy movies films movie film stuff scenes content elements ones stories story please at all vibes themes "
    "thanks".split())
#: words that join negated terms ("no horror, gore or romance"); a join must lead straight to another term
SCOPE_JOIN: frozenset[str] = frozenset(", or nor and / & no any too much the a".split())

#: words before a lone surname that make it a person ("directed by Nolan", "with Hanks")
PERSON_CUES: frozenset[str] = frozenset("by with starring featuring director actor actress stars star".split())

#: words that are never a title on their own when typed in lower case after a cue ("I'd like it", "seen her")
COMMON_WORDS: frozenset[str] = frozenset("""
a an and are as at be but by for from have he her him his i if in is it its me my no not of on or our she so
that the their them they this to too was we were what when which who will with you your up seven heat love good
great movie movies film films one ones see seen watch watching really just some more very much also something
anything everything nothing stuff those these that others other another before after today tonight home life
better best thing things kind sort type lot lots people story stories show shows series night day time old new
classic classics recent modern favorite favourite same similar different this that way well all any most
""".split())


#: what may follow a title named as seen and make it liked after all ("I watched Heat and loved it")
LIKED_AFTER_SEEN: frozenset[tuple[str, ...]] = frozenset(tuple(k.split()) for k in (
    "and loved it", "and liked it", "and enjoyed it", "and adored it", "and really liked it", "and really loved it",
    "and really enjoyed it", "and i loved it", "and i liked it", "and i enjoyed it", "and it was great",
))

#: MovieLens tags that say what someone thought of a movie or of their list, not what the movie is
_TAG_STOP = frozenset("""
in netflix queue|imdb top 250|seen more than once|not seen|bad|awesome|boring|overrated|great acting|great dialogue|
great ending|great performances|good dialogue|interesting|masterpiece|predictable|ridiculous|stupid ending|too long|
plot holes|audience intelligence underestimated|bad acting|bad plot|bad script|bad writing|characters|dialogue|
nudity (full frontal)|fun|unique|moving|06 oscar nominated best movie - animation|stupid|slick|smart|original plot
""".replace("\n", "").split("|"))


def tag_concepts(tags: list[str], skip: set[str] | frozenset[str] = frozenset(),
                 concepts: tuple[Concept, ...] = CONCEPTS) -> tuple[Concept, ...]:
    """A concept per MovieLens tag a request may name as it is ("atmospheric", "high school", "time loop"):
    the tag itself is its phrase, what a movie must carry its tag. Left out: tags that a concept already says
    ("funny", "mafia"), that are common words, people (``skip``), years, or opinions ("boring", "overrated")."""
    said = {" ".join(p) for p in concept_phrases(concepts)} | {c.label for c in concepts}
    out: dict[str, Concept] = {}
    for t in tags:
        low = " ".join(t.lower().split())
        if (low in said or low in _TAG_STOP or low in skip or low in COMMON_WORDS or len(low) < 3
                or re.search(r"\d", low) or not re.fullmatch(r"[a-z][a-z' &.-]*", low)):
            continue
        out.setdefault(low, Concept(low, (low,), tags=frozenset({low}), from_tag=True))
    return tuple(out.values())

"""English function words: what a question is made of besides what it asks about.

"how do I put a package on hold" asks about *put, package, hold*. Function words earn no BM25
credit and no highlight unless the query is nothing but function words (or a quoted phrase),
and they are never tag evidence. One list for search, highlighting and tags.
"""

from __future__ import annotations

# Articles, pronouns, determiners, prepositions, conjunctions, auxiliary and modal verbs,
# common adverbs, contractions; grouped so a missing one is easy to spot.
FUNCTION_WORDS = frozenset(
    """
a an the this that these those such same other others another each every either neither both
all any some no none nor one ones own several few many much more most less least enough
i me my mine myself we us our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves who whom whose
which what whatever whichever whoever whomever whether someone somebody something anyone
anybody anything everyone everybody everything nobody nothing noone
about above across after afterwards against along alongside amid amidst among amongst around
as at before behind below beneath beside besides between beyond by despite down during except
for from in inside into like near of off on onto out outside over past per since than through
throughout thru till to toward towards under underneath unlike until unto up upon via with
within without
and but or so yet because although though while whereas unless if then else also too either
however therefore thus hence moreover furthermore nevertheless nonetheless otherwise meanwhile
instead indeed rather whereby wherein whereupon thereby therein thereafter hereby herein
am is are was were be been being do does did doing done have has had having can could may
might must shall should will would ought need dare get gets got getting let lets
not very just only even still already again ever never always often sometimes usually almost
quite perhaps maybe here there where when why how whenever wherever now once soon later ago
yes ok okay etc eg ie vs
don doesn didn isn aren wasn weren hasn haven hadn won wouldn shouldn couldn can't cannot
cant mustn needn ll ve re
""".split()
)


def is_function_word(word: str) -> bool:
    """Whether a query word is a function word; an all-capitals word (IT, US) is an acronym."""
    text = word.strip().strip("'\"")
    if len(text) >= 2 and text.isupper():
        return False
    return text.lower() in FUNCTION_WORDS


def content_words(words: list[str]) -> list[str]:
    """The words that carry the query (all of them when there are no others)."""
    kept = [w for w in words if not is_function_word(w)]
    return kept or list(words)

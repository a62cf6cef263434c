"""Rights evidence in a record's caption / alt text, its source URL and its sidecar metadata.

The caption rules fire on explicit notices (©, "(c) 2019", "copyright", "all rights
reserved") and on stock-agency names, matched as whole words so that ordinary
text ("(c)" in an enumeration, "copy right side", "alamy" inside another word)
does not raise a false alarm.  The URL rule matches stock-agency domains by whole
host labels.  Sidecar metadata (an img2dataset .json, extra Parquet columns) is
searched for the `noai` / `noimageai` directives of an X-Robots-Tag header or a
robots meta tag, which reserve the image from AI training.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from dedupkit.copyright.metadata import MAX_VALUE_CHARS, Evidence

STOCK_AGENCIES = {
    # canonical name: caption pattern (whole words, case-insensitive)
    "Getty Images": r"getty\s*images",
    "Shutterstock": r"shutterstock",
    "Alamy": r"alamy",
    "iStock": r"istock(?:photo)?",
    "Adobe Stock": r"adobe\s*stock",
    "Dreamstime": r"dreamstime",
    "123RF": r"123rf",
    "Depositphotos": r"deposit\s*photos",
    "Bigstock": r"bigstock(?:photo)?",
    "Fotolia": r"fotolia",
    "Pond5": r"pond5",
    "Can Stock Photo": r"can\s*stock\s*photo",
    "EyeEm": r"eyeem",
    "Stocksy": r"stocksy",
    "Masterfile": r"masterfile",
    "agefotostock": r"age\s*fotostock",
    "SuperStock": r"superstock",
    "VectorStock": r"vectorstock",
}

# Host labels that belong to a stock agency, whatever the country domain (alamy.de, c8.alamy.com).
STOCK_HOST_LABELS = {
    "gettyimages": "Getty Images", "shutterstock": "Shutterstock", "alamy": "Alamy",
    "istockphoto": "iStock", "dreamstime": "Dreamstime", "123rf": "123RF",
    "depositphotos": "Depositphotos", "bigstockphoto": "Bigstock", "fotolia": "Fotolia",
    "ftcdn": "Adobe Stock", "pond5": "Pond5", "canstockphoto": "Can Stock Photo", "eyeem": "EyeEm",
    "stocksy": "Stocksy", "masterfile": "Masterfile", "agefotostock": "agefotostock",
    "superstock": "SuperStock", "vectorstock": "VectorStock",
}
STOCK_HOST_SUFFIXES = {"stock.adobe.com": "Adobe Stock"}

_AGENCY_PATTERN = re.compile(
    r"(?<![\w-])(?:" + "|".join(f"(?P<a{i}>{p})" for i, p in enumerate(STOCK_AGENCIES.values())) + r")(?![\w-])",
    re.I,
)
_AGENCY_NAMES = list(STOCK_AGENCIES)

CAPTION_RULES = (
    ("©", re.compile(r"©")),
    ("(c) year", re.compile(r"\(c\)\s*(?:19|20)\d\d\b", re.I)),
    ("copyright", re.compile(r"\bcopyright(?:ed)?\b(?![\s-]*free)", re.I)),
    ("all rights reserved", re.compile(r"\ball\s+rights\s+reserved\b", re.I)),
    ("stock photo", re.compile(r"\bstock\s+(?:photo|photograph|image|vector|illustration)s?\b", re.I)),
)

_NOTICE_NOISE = re.compile(
    r"©|\(c\)|\bcopyright(?:ed)?\b|\ball\s+rights\s+reserved\b|\b(?:19|20)\d\d(?:\s*[-–]\s*(?:19|20)?\d\d)?\b|\bby\b",
    re.I,
)

ROBOTS_KEYS = re.compile(r"^(?:x[-_]robots[-_]tag|robots)$", re.I)
NOAI_DIRECTIVE = re.compile(r"(?<![\w-])no(?:image)?ai(?![\w-])", re.I)
_MAX_METADATA_DEPTH = 4


def _snippet(text: str, match: re.Match) -> str:
    start, end = max(0, match.start() - 40), min(len(text), match.end() + 40)
    snippet = " ".join(text[start:end].split())
    return snippet[:MAX_VALUE_CHARS]


def caption_evidence(caption: str | None) -> list[Evidence]:
    if not caption:
        return []
    evidence = []
    for rule, pattern in CAPTION_RULES:
        match = pattern.search(caption)
        if match:
            evidence.append(Evidence("caption", rule, _snippet(caption, match), claims_rights=True))
    for match in _AGENCY_PATTERN.finditer(caption):
        agency = _AGENCY_NAMES[int(match.lastgroup[1:])]
        evidence.append(Evidence("caption", f"agency:{agency}", _snippet(caption, match), claims_rights=True))
        break
    return evidence


def url_evidence(url: str | None) -> list[Evidence]:
    if not url:
        return []
    try:
        host = (urlsplit(url.strip()).hostname or "").lower().rstrip(".")
    except ValueError:
        return []
    for suffix, agency in STOCK_HOST_SUFFIXES.items():
        if host == suffix or host.endswith("." + suffix):
            return [Evidence("url", f"agency:{agency}", host, claims_rights=True)]
    labels = host.split(".")[:-1]  # the top-level domain is never an agency name
    for label in labels:
        if label in STOCK_HOST_LABELS:
            return [Evidence("url", f"agency:{STOCK_HOST_LABELS[label]}", host, claims_rights=True)]
    return []


def directive_evidence(metadata: Mapping | None) -> list[Evidence]:
    """noai / noimageai in any X-Robots-Tag or robots value of the sidecar metadata, however nested."""
    found: list[Evidence] = []

    def visit(node: object, path: str, depth: int) -> None:
        if depth > _MAX_METADATA_DEPTH or not isinstance(node, Mapping):
            return
        for key, value in node.items():
            where = f"{path}.{key}" if path else str(key)
            if isinstance(value, Mapping):
                visit(value, where, depth + 1)
            elif isinstance(key, str) and ROBOTS_KEYS.match(key.strip()):
                values = value if isinstance(value, (list, tuple)) else [value]
                for item in values:
                    text = item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item)
                    if NOAI_DIRECTIVE.search(text):
                        found.append(Evidence("metadata", where, " ".join(text.split())[:MAX_VALUE_CHARS],
                                              claims_rights=True, prohibits_training=True))

    visit(metadata or {}, "", 0)
    return found


def holder_from_notice(notice: str) -> str | None:
    """The rights holder named in a notice: '© 2019 Jane Doe. All rights reserved.' -> 'Jane Doe'."""
    name = _NOTICE_NOISE.sub(" ", notice)
    name = " ".join(name.split()).strip(" .,;:-–|/")
    return name or None

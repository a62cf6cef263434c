"""Copyright tagging: rights metadata, caption / URL / noai rules, and visible marks.

`CopyrightStage` is the pipeline stage; `copyright_columns` tags one record;
`read_metadata`, `caption_evidence`, `url_evidence` and `directive_evidence` are the
individual evidence readers.  The visible-mark classifier (torch) loads only when
a stage with `visible_marks=True` first sees pixels.
"""

from dedupkit.copyright.metadata import Evidence, Findings, read_metadata
from dedupkit.copyright.stage import (
    COPYRIGHT_COLUMNS, CopyrightStage, CopyrightTags, copyright_columns, copyright_drop_reason,
)
from dedupkit.copyright.text_rules import caption_evidence, directive_evidence, url_evidence

__all__ = [
    "COPYRIGHT_COLUMNS", "CopyrightStage", "CopyrightTags", "Evidence", "Findings", "caption_evidence",
    "copyright_columns", "copyright_drop_reason", "directive_evidence", "read_metadata", "url_evidence",
]

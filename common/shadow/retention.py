"""Shadow pairs under the retention limit and erasure, as the predictions they came from.

A pair holds, sealed, production's and the candidate's predictions for one kept prediction,
and names the principal whose request it was. Erasing that principal deletes their pairs
(as it deletes their kept predictions); the retention job deletes pairs older than the
retention period. A shadow's report is then made from the pairs that remain. Pairs stored
before pairs named their principal cannot be found by subject; they go with the period.
"""

from __future__ import annotations

from collections.abc import Callable

from common.audit.retention import delete_matching
from common.backends.base import DocumentStore, Filter
from common.monitoring.compliance.context import PersonalRecords
from common.shadow.shadows import PAIRS

PERSONAL = PersonalRecords(PAIRS, "time", ("principal", "proprietary_metrics"))
"""What GDPR_001 checks of shadow pairs: none older than the period may remain."""


def purge_pairs(documents: DocumentStore, cutoff: str, spent: Callable[[], bool]) -> int:
    """Delete the pairs of kept predictions made before ``cutoff``; how many."""
    return delete_matching(documents, PAIRS, [Filter("time", "<", cutoff)], spent)


def erase_principal(documents: DocumentStore, subject: str) -> int:
    """Delete the pairs of requests ``subject`` made; how many."""
    return delete_matching(documents, PAIRS, [Filter("principal", "==", subject)], lambda: False)

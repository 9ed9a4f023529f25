"""Check the audit trail of the configured store and print the report as JSON.

    python scripts/verify_audit.py [--no-payloads] [--anchors FILE ...]

With ``--anchors``, the newest exported ``audit anchor`` line of each chain (files the
audit-anchor log sink wrote, or a function's own log lines) is checked against the store
too, which shows entries cut from the end of a chain together with its head, and whole
chains deleted. Exit status 0 when every chain verifies, 1 when anything was altered,
removed or forged (a problem in the report), 2 when the check could not be made: bad
settings, the key missing or unreadable, the store or an anchor file unreadable, or any
other failure; then stderr says why and nothing is printed on stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from common.audit.trail import audit_key
from common.audit.verify import Anchor, AuditReport, read_anchors, verify_audit
from common.core.config import Settings
from common.core.errors import ServiceError
from common.services import Services

CANNOT_CHECK = 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify the audit trail.")
    parser.add_argument(
        "--no-payloads",
        action="store_true",
        help="check MACs and chains only; do not unwrap keys to open sealed payloads",
    )
    parser.add_argument(
        "--anchors",
        nargs="+",
        type=Path,
        default=[],
        metavar="FILE",
        help="exported audit-anchor log lines (JSON Lines) to check the store against",
    )
    args = parser.parse_args(argv)
    try:
        report = _verify(args.anchors, payloads=not args.no_payloads)
    except ServiceError as exc:
        return _cannot_check(exc.message)
    except (OSError, ValueError) as exc:
        return _cannot_check(str(exc))
    except Exception as exc:  # not checked is never "tampering" (exit 1)
        return _cannot_check(f"{type(exc).__name__}: {exc}")
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


def _verify(anchor_files: list[Path], *, payloads: bool) -> AuditReport:
    anchors = _anchors(anchor_files)
    settings = Settings.from_environ()  # a ValueError that names the variable
    services = Services.build(settings)
    try:
        try:
            key = audit_key(services.backends.secrets, settings.audit_secret_name)
        except ServiceError as exc:
            raise ServiceError(f"cannot read the audit key: {exc.message}") from None
        return verify_audit(
            services.backends.documents,
            key,
            cipher=services.cipher if payloads else None,
            anchors=anchors,
        )
    finally:
        services.close()


def _cannot_check(reason: str) -> int:
    print(f"verify_audit: {reason}; the trail was not checked", file=sys.stderr)
    return CANNOT_CHECK


def _anchors(paths: list[Path]) -> dict[str, Anchor]:
    """The newest anchor of each chain across every file."""
    newest: dict[str, Anchor] = {}
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            try:
                found = read_anchors(lines)
            except ValueError as exc:
                raise ValueError(f"{path}: {exc}") from None
        if not found:
            print(f"verify_audit: {path}: no audit anchor lines", file=sys.stderr)
        for chain, anchor in found.items():
            if chain not in newest or anchor.last_seq > newest[chain].last_seq:
                newest[chain] = anchor
    if paths and not newest:
        raise ValueError(
            "--anchors named files without a single audit anchor line; pass the files the "
            "audit-anchor sink exported (docs/DEPLOYMENT.md) or a function's own log"
        )
    return newest


if __name__ == "__main__":
    raise SystemExit(main())

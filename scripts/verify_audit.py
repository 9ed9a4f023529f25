"""Check the audit trail of the configured store and print the report as JSON.

    python scripts/verify_audit.py [--no-payloads]

Exit status 0 when every chain verifies, 1 when anything was altered, removed or forged,
2 when the trail cannot be read (missing secret, store unreachable).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.audit import audit_key
from common.audit_verify import verify_audit
from common.errors import ServiceError
from common.local import settings_or_exit
from common.services import Services


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Verify the audit trail.")
    parser.add_argument(
        "--no-payloads",
        action="store_true",
        help="check MACs and chains only; do not unwrap keys to open sealed payloads",
    )
    args = parser.parse_args(argv)
    settings = settings_or_exit("verify_audit")
    services = Services.build(settings)
    try:
        key = audit_key(services.backends.secrets, settings.audit_secret_name)
        report = verify_audit(
            services.backends.documents,
            key,
            cipher=None if args.no_payloads else services.cipher,
        )
    except ServiceError as exc:
        print(f"verify_audit: {exc.message}", file=sys.stderr)
        return 2
    finally:
        services.close()
    print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

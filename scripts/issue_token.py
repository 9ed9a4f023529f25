"""Print one signed development token on stdout, and nothing else.

    python scripts/issue_token.py [--sub SUBJECT] [--perms model:read,model:*:predict] [--ttl N]

By default the token may do everything (``admin``).
"""

from __future__ import annotations

import argparse
import sys

from tools.local import (
    ALL_PERMISSIONS,
    development_token,
    ensure_local_secrets,
    settings_or_exit,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print a signed development token.")
    parser.add_argument("--sub", default="local-developer", help="token subject")
    parser.add_argument(
        "--perms", default=",".join(ALL_PERMISSIONS), help="comma-separated permissions"
    )
    parser.add_argument("--ttl", type=int, default=3600, help="lifetime in seconds")
    args = parser.parse_args(argv)
    permissions = tuple(p.strip() for p in args.perms.split(",") if p.strip())
    settings = settings_or_exit("issue_token")
    ensure_local_secrets(settings)
    try:
        token = development_token(
            settings, subject=args.sub, permissions=permissions, ttl_s=args.ttl
        )
    except ValueError as exc:
        print(f"token: {exc}", file=sys.stderr)
        return 2
    if not settings.hs256_accepted:
        print(
            "token: note: these settings do not accept HS256 tokens like this one "
            "(IPO_JWT_HS256_ENABLED, off by default with IPO_JWT_JWKS_URL)",
            file=sys.stderr,
        )
    print(token)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

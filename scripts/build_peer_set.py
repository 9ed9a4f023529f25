"""Build a CCA peer-set artifact (JSON) from your peer CSV, or the synthetic demo set.

    python scripts/build_peer_set.py peers.csv --out peer_set.json
    python scripts/build_peer_set.py peers.csv -o p.json --weights ev_revenue=.5,ev_ebitda=.5,pe=0
    python scripts/build_peer_set.py --synthetic --seed 20261127 --out demo_peer_set.json

The CSV has the columns name, sector, ev_revenue, ev_ebitda, pe, market_cap_musd; every
problem is reported with its line number and nothing is written. docs/models/cca.md
describes the format; `scripts/train_models.py --models cca --data peers.csv` registers
a peer set from the same CSV.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from common.models.cca_schema import to_artifact
from tools.training import cca_builder, cca_peers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("csv", nargs="?", type=Path, help="your peer CSV")
    source.add_argument("--synthetic", action="store_true", help="the synthetic demo set")
    parser.add_argument("-o", "--out", type=Path, required=True, help="where to write the JSON")
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the synthetic set")
    parser.add_argument("--weights", help="ev_revenue=w,ev_ebitda=w,pe=w summing to 1")
    band = parser.add_mutually_exclusive_group()
    band.add_argument("--size-factor", type=float, default=cca_peers.DEFAULT_SIZE_FACTOR)
    band.add_argument("--no-size-band", action="store_true", help="always use whole sectors")
    parser.add_argument("--min-peers", type=int, default=cca_peers.DEFAULT_MIN_PEERS)
    args = parser.parse_args(argv)

    try:
        options = {
            "weights": cca_builder.parse_weights(args.weights) if args.weights else None,
            "size_factor": None if args.no_size_band else args.size_factor,
            "min_peers": args.min_peers,
        }
        if args.synthetic:
            peer_set = cca_peers.synthetic_peer_set(args.seed, **options)
        else:
            peer_set = cca_peers.peer_set_from_csv(args.csv, **options)
    except (OSError, ValueError) as exc:
        print(f"build_peer_set: {exc}", file=sys.stderr)
        return 1
    artifact = to_artifact(peer_set)
    args.out.write_bytes(artifact)
    print(json.dumps(cca_builder.summary(peer_set), indent=2))
    print(f"wrote {args.out} (sha256 {hashlib.sha256(artifact).hexdigest()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

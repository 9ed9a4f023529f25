"""Batch prediction jobs over JSONL files in the artifact store (docs/BATCH.md).

``spec`` holds the request, the locations a job may use and its record; ``plan`` turns a
request into a job and its shards; ``leases`` claims, takes over and commits shards in
store transactions; ``runner`` predicts a shard and writes its outputs; ``jobs`` is what
the routes call. The store and the bucket are the only coordination between workers.
"""

"""The Open Inference Protocol (KServe V2) REST routes over the same serving path.

``tensors.py`` names a tensor; ``signature.py`` derives a version's inputs from its input
schema and its outputs from its recorded outputs; ``codec.py`` turns a v2 request into the
instances ``/v1/predict`` validates and ``outputs.py`` predictions into named outputs (both
reusable by any route taking v2 tensors); ``readiness.py`` answers the server's health;
``errors.py`` gives the protocol's error shape. The routes are common/api/handlers/oip.py.
"""

"""Batch extraction on ``dask.distributed``: manifests, planning, tasks, reports; resumable and
kill-safe.

Imports features, codec, audio, store and the kernel.
"""

"""A run: records, server slots, warm-up, the batch of samples, the final manifest.

`execute_run` (run.py) is the one entry point; `infer` and `bench` differ only in the
`ServerSource` they hand it (sources.py: a running server, or servers this tool starts).
"""

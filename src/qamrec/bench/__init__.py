"""Speed and scale benchmarks (``qamrec bench``); the quality benchmarks are in :mod:`qamrec.eval`.

* :mod:`.serve`: latency of one recommend call in-process and of the HTTP service under load
* :mod:`.load`: the service under rising load (throughput, latency, 503 refusals, acknowledged vs stored writes)
* :mod:`.scale`: graph build, training, catalog embedding and index recall against the data size
"""

__all__: list[str] = []

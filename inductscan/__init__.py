"""inductscan: find when induction heads form, across checkpoint suites and their seeds.

Public API::

    inductscan.load_results(path, **filters)  # DataFrame indexed by (seed, step, layer, head)
    inductscan.load_probe(path)               # the probe's token ids, (batch, position)
    inductscan.load_failures(path)            # checkpoints that were skipped or failed, and why
"""

from inductscan.store import load_failures, load_probe, load_results, package_version

__version__ = package_version()
__all__ = ["load_failures", "load_probe", "load_results", "__version__"]

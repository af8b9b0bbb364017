"""The results folder: its layout, its writers and readers, compaction, settings and SQL.

Layout of a results folder (:mod:`inductscan.results.layout` builds every path)::

    scores/SUITE/RUN/step-000001000.parquet    one row per (layer, head)
    scores/SUITE/RUN/compact-000001.parquet    after `inductscan compact` (and a scan): many steps'
                                               rows, sorted (see inductscan/results/compact.py)
    icl_curves/SUITE/RUN/step-000001000.parquet  with --icl-dataset: mean loss per token position
    token_losses/SUITE/RUN/step-000001000.parquet  with --token-losses: every ICL token's loss
    failures/SUITE/RUN/step-000001000.json     why a checkpoint was not scored (removed on success)
    probes/PROBE_ID.json                       a probe's parameters and token ids
    icl/ICL_ID.json                            the ICL examples' settings and token ids
    settings/SUITE.json                        the settings the folder's first scan of a suite claimed
    custom_scores/NAME.json                    a user's score the table has a column of: its declaration
    listings/OWNER_REPO.json                   a repo's branches as listed once (inductscan.listing)
    claims/SUITE/RUN/step-000001000.lock       held (fcntl.flock) while a scan scores the checkpoint
    notes/SUITE/RUN.json                       head scores a run has no value for, and why (not a failure)
    damaged/TABLE/SUITE/RUN/                   files a scan set aside because they cannot be read

Every file is written to a dot-prefixed temporary name in its folder and renamed into place
(:func:`inductscan.results.layout.atomic`), so a scan killed at any moment leaves no half-written
file where a reader looks, and a re-run scores exactly the checkpoints without a file. One module a
job: ``layout`` (paths, the atomic writer, run folders), ``folder`` (:class:`ResultsFolder`, the
handle a command lists the folder through once), ``schema``, ``write``, ``read``, ``sql``,
``queries``, ``answers`` (what ``inductscan query`` prints) and ``rows``, ``compact``, ``damaged``,
``settings``, ``selection``, ``token_losses``, ``probes``, ``records`` (failures and run notes),
``declarations`` (users' scores) and ``listings``. No module
outside this package reads or writes a results file, parquet or DuckDB (tests/test_layout.py).

Importing this package imports nothing: each module is imported by its users.
"""

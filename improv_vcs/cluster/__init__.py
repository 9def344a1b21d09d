"""Reading and re-classifying a snapshot on a Dask cluster (extra ``dask``).

:func:`to_dask` gives a selection's manifest rows as a Dask DataFrame,
:func:`images_to_dask` its images as a Dask Bag; :func:`attach_run` maps a
function over the images and commits its records as a run. Workers read
the packs themselves (local, S3, HTTP) and stage their records as
segments; the client only plans and commits. See docs/operations.md,
"Running on a cluster".
"""

from .collections import images_to_dask, to_dask
from .partitions import Part, parts
from .runs import RunReport, Staged, attach_run

__all__ = ["Part", "RunReport", "Staged", "attach_run", "images_to_dask", "parts", "to_dask"]

"""NIfTI research input and output of the pipeline (the MiniVess research data are NIfTI).

:mod:`.io` reads and writes NIfTI-1 files as ``array[k, j, i]`` with an LPS
:class:`~operators.geometry.VoxelGeometry`; the builder and the generator use it too.
"""

"""NIfTI research input and output of the pipeline (the MiniVess research data are NIfTI).

* :mod:`.io` reads and writes NIfTI-1 files as ``array[k, j, i]`` with an LPS
  :class:`~operators.geometry.VoxelGeometry`; the builder and the generator use it too;
* :mod:`.volume` turns a NIfTI input into a :class:`~operators.values.SeriesVolume` with
  the checks DICOM input gets;
* :mod:`.operators` wraps reading and writing as MONAI Deploy operators (not imported
  here: it imports Holoscan).
"""

"""Ensemble inference and uncertainty of the pipeline.

* :mod:`.fusion` fuses the members' probabilities into a
  :class:`~operators.values.SegmentationResult` (mask, uncertainty maps, study score, review
  flag), free of Holoscan;
* :mod:`.operators` wraps inference and fusion as MONAI Deploy operators.
"""

"""The pipeline's operators, one package per job (MONAI Deploy: one operator, one job).

Each package holds plain modules, free of Holoscan and tested on their own, and an
``operators.py`` that wraps them as MONAI Deploy operators with named ports:

* :mod:`.dicom_input` scan, select, series to volume;
* :mod:`.segmentation` ensemble inference and fusion into a result with uncertainty;
* :mod:`.dicom_output` the SEG, Parametric Map and SR writers;
* :mod:`.nifti` research input and output;
* :mod:`.preview` pictures of the written results for people (``make demo``, the web
  console), not a pipeline stage.

What flows between them is in :mod:`.values` (on the grid of :mod:`.geometry`); the errors
a run reports in :mod:`.errors`, the run's ``report.json`` in :mod:`.run_report`.
"""

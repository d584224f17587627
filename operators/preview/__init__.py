"""Pictures of a result for people: PNG thumbnails rendered from our own outputs.

* :mod:`.results` reads a run's vessel SEG and uncertainty Parametric Map back into
  voxel arrays on one grid (highdicom), optionally with the source series beside them;
* :mod:`.render` turns those arrays into pictures (numpy + Pillow only: matplotlib is
  not in the appliance runtime): a maximum-intensity projection with the vessel
  overlay, axial slices, each with the uncertainty map beside it.

Used by ``make demo`` (:mod:`map_app.demo`) and the web console
(:mod:`service.http.console`), so both show the same pictures.
"""

from operators.preview.render import (
    PreviewError,
    ResultVolumes,
    axial_picture,
    mip_picture,
    png_bytes,
    telling_slices,
)

__all__ = [
    "PreviewError",
    "ResultVolumes",
    "axial_picture",
    "mip_picture",
    "png_bytes",
    "telling_slices",
]

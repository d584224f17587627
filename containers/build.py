"""Build the appliance (MAP) and builder images with podman, offline, with caching.

    python -m containers.build appliance [--variant cpu|gpu]   the appliance image (make image)
    python -m containers.build builder                         the training image
    python -m containers.build base | wheelhouse               just one of the inputs

Three steps, each cached under ``var/containers/`` so that a second build (and every
test session after the first) reuses them:

1. the Debian base image ``localhost/minivess-base:bookworm``, made with ``mmdebstrap``
   from the Debian mirror named in this machine's apt sources (no registry needed),
   kept as a tar keyed by its recipe and imported into podman (``base_image.py``,
   ``debian_mirror.py``);
2. a wheelhouse made from ``uv.lock``: ``uv export`` of the runtime dependencies (no
   dependency groups; the builder image adds the ``builder`` group), ``pip download``
   of exactly those pins, keyed by the SHA-256 of the lock (``wheelhouse.py``);
3. ``podman build --network none`` with the wheelhouse as the extra build context
   ``wheelhouse``; the image carries the digest of all its inputs in a label, and an
   image whose label matches is reused without building (``images.py``).

Podman reads ``containers/containers.conf`` (runc, cgroupfs, file events, explicit
ulimits) unless ``CONTAINERS_CONF`` is set (``podman.py``). Sites build on their own
approved base with ``--base-image`` (then no mmdebstrap).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict

from containers.base_image import ensure_base_image
from containers.cache import cache_lock
from containers.commands import ContainerBuildError
from containers.images import VARIANTS, build_appliance_image, build_builder_image
from containers.wheelhouse import ensure_wheelhouse


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m containers.build",
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("target", choices=["appliance", "builder", "base", "wheelhouse"])
    parser.add_argument("--variant", choices=VARIANTS, default="cpu", help="appliance variant")
    parser.add_argument("--tag", help="image reference (default localhost/minivess-...:VERSION)")
    parser.add_argument("--base-image", help="build on this image instead of the mmdebstrap base")
    parser.add_argument("--force", action="store_true", help="build even when current")
    parser.add_argument("--refresh-base", action="store_true", help="re-run mmdebstrap")
    args = parser.parse_args(argv)
    try:
        if args.target == "base":
            with cache_lock():
                print(ensure_base_image(refresh=args.refresh_base))
        elif args.target == "wheelhouse":
            with cache_lock():
                print(ensure_wheelhouse(args.variant).path)
        elif args.target == "builder":
            image = build_builder_image(ref=args.tag, base_image=args.base_image, force=args.force)
            print(json.dumps(asdict(image), indent=2))
        else:
            image = build_appliance_image(
                args.variant,
                ref=args.tag,
                base_image=args.base_image,
                force=args.force,
                refresh_base=args.refresh_base,
            )
            print(json.dumps(asdict(image), indent=2))
    except ContainerBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

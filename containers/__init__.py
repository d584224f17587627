"""Building the appliance and builder images offline with podman (``python -m containers.build``).

One job per module: ``podman`` (podman and local images), ``commands`` (errors, logged
commands), ``provenance`` (version, git revision, date), ``cache`` (var/containers, its
lock and keys), ``debian_mirror`` (apt sources), ``base_image`` (mmdebstrap),
``wheelhouse`` (the lock's wheels), ``images`` (podman build), ``build`` (the CLI).
"""

"""Building the appliance and builder images offline with podman (see ``containers.build``)."""

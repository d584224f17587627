"""The HTTP sidecar of the appliance (BentoML 1.4): uploads, jobs, DICOMweb STOW-RS,
health and metrics, in the Service's own process. See :mod:`service.http.server`."""

"""Site-side tools of the air-gapped install: deploy.sh and its standard-library helpers."""

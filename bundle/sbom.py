"""The bundle's SBOMs, CycloneDX 1.6 JSON, each validated against the 1.6 schema.

- ``python-environment.cdx.json``: the appliance's Python environment as locked:
  ``uv export --frozen --no-default-groups --format requirements-txt`` (the runtime
  pins with their ``--hash`` lines) through ``cyclonedx-py requirements``, so every
  component carries the SHA-256 of its locked distributions.
- ``appliance-image.cdx.json``: what is in the image: ``cyclonedx-py environment`` run
  inside the image against its own interpreter (licences, purls; see ``probe.py``),
  plus every installed Debian package (``dpkg-query``; ``pkg:deb`` purls, built and
  percent-encoded by packageurl-python), with the image itself (id, revision) as the
  BOM's subject.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from bundle.image import ImageRef
from containers.provenance import REPO_ROOT
from containers.wheelhouse import find_uv


class SbomError(RuntimeError):
    pass


def validate(text: str, what: str) -> None:
    """Raise unless ``text`` is valid CycloneDX 1.6 JSON (strict schema)."""
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise SbomError(f"{what} is not valid CycloneDX 1.6: {error}")


def _cyclonedx_py() -> list[str]:
    script = Path(sys.executable).with_name("cyclonedx-py")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cyclonedx_py"]


def python_environment_sbom(out: Path, work: Path) -> None:
    """The locked runtime environment, with hashes, into ``out``."""
    uv = find_uv()
    if uv is None:
        raise SbomError("uv not found (scripts/bootstrap.sh python installs it)")
    requirements = work / "requirements-locked.txt"
    cmd = [uv, "export", "--frozen", "--no-default-groups", "--format", "requirements-txt"]
    cmd += ["--no-emit-project", "--output-file", str(requirements)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SbomError(f"uv export failed: {done.stderr.strip()}")
    cmd = [*_cyclonedx_py(), "requirements", "--sv", "1.6", "--of", "JSON"]
    cmd += ["--output-reproducible", "--pyproject", str(REPO_ROOT / "pyproject.toml")]
    cmd += ["-o", str(out), str(requirements)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SbomError(f"cyclonedx-py requirements failed: {done.stderr.strip()[-2000:]}")
    validate(out.read_text(), out.name)


def _distro(os_release: str) -> str:
    fields = dict(re.findall(r'^([A-Z_]+)="?([^"\n]*)"?$', os_release, re.M))
    return f"{fields.get('ID', 'debian')}-{fields.get('VERSION_ID', 'unknown')}"


def debian_purl(package: dict[str, str], distro: str) -> str:
    """The package URL of an installed Debian package, percent-encoded as the purl spec
    says (``libstdc++6`` -> ``libstdc%2B%2B6``, ``+deb12u1`` -> ``%2Bdeb12u1``)."""
    qualifiers = {"arch": package["arch"], "distro": distro}
    name, version = package["name"], package["version"]
    return PackageURL("deb", "debian", name, version, qualifiers).to_string()


def image_sbom(image: ImageRef, facts: dict[str, Any], build_time: str) -> dict[str, Any]:
    """The image's SBOM from the probe's facts (see the module docstring)."""
    bom = json.loads(json.dumps(facts["python_sbom"]))
    distro = _distro(facts["os_release"])
    image_ref = f"container:{image.id}"
    bom.setdefault("metadata", {})
    bom["metadata"]["timestamp"] = build_time
    bom["metadata"]["component"] = {
        "type": "container",
        "bom-ref": image_ref,
        "name": image.ref.rsplit(":", 1)[0],
        "version": image.version,
        "description": "MinIVess appliance image (MONAI Application Package)",
        "hashes": [{"alg": "SHA-256", "content": image.id}],
        "properties": [
            {"name": "minivess:image:id", "value": f"sha256:{image.id}"},
            {"name": "minivess:image:revision", "value": image.revision},
            {"name": "minivess:image:created", "value": image.created},
            {"name": "minivess:image:variant", "value": image.variant},
            {"name": "minivess:image:python", "value": facts["python_version"]},
            {"name": "minivess:image:os", "value": distro},
        ],
    }
    components = bom.setdefault("components", [])
    refs = [c["bom-ref"] for c in components if "bom-ref" in c]
    for package in facts["debian_packages"]:
        purl = debian_purl(package, distro)
        component = {
            "type": "library",
            "bom-ref": purl,
            "name": package["name"],
            "version": package["version"],
            "purl": purl,
            "properties": [{"name": "minivess:debian:source", "value": package["source"]}],
        }
        components.append(component)
        refs.append(purl)
    bom.setdefault("dependencies", []).append({"ref": image_ref, "dependsOn": sorted(refs)})
    validate(json.dumps(bom), "the image SBOM")
    return bom

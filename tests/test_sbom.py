"""The image SBOM's Debian package URLs: built by packageurl-python, percent-encoded."""

from __future__ import annotations

from packageurl import PackageURL

from bundle import sbom
from bundle.image import ImageRef

IMAGE_ID = "ab" * 32
LIBSTDCXX = {
    "name": "libstdc++6",
    "version": "12.2.0-14+deb12u1",
    "arch": "amd64",
    "source": "gcc-12",
}


def test_debian_purl_percent_encodes_what_the_spec_says() -> None:
    """'+' is not allowed unencoded in a purl's name or version; ':' (the epoch) is."""
    assert sbom.debian_purl(LIBSTDCXX, "debian-12") == (
        "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
    )
    epoch = {**LIBSTDCXX, "name": "perl-base", "version": "1:5.36.0-7+deb12u2"}
    assert sbom.debian_purl(epoch, "debian-12") == (
        "pkg:deb/debian/perl-base@1:5.36.0-7%2Bdeb12u2?arch=amd64&distro=debian-12"
    )
    parsed = PackageURL.from_string(sbom.debian_purl(LIBSTDCXX, "debian-12"))
    assert (parsed.name, parsed.version) == ("libstdc++6", "12.2.0-14+deb12u1")


def test_image_sbom_carries_the_encoded_purls_and_validates() -> None:
    image = ImageRef(
        ref="localhost/minivess-appliance:0.1.0",
        id=IMAGE_ID,
        version="0.1.0",
        revision="0" * 40,
        created="2026-01-01T00:00:00Z",
        variant="cpu",
    )
    facts = {
        "python_sbom": {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1},
        "os_release": 'ID=debian\nVERSION_ID="12"\n',
        "python_version": "3.11.2",
        "debian_packages": [LIBSTDCXX],
    }
    bom = sbom.image_sbom(image, facts, "2026-01-01T00:00:00Z")  # validates CycloneDX 1.6
    (component,) = bom["components"]
    expected = "pkg:deb/debian/libstdc%2B%2B6@12.2.0-14%2Bdeb12u1?arch=amd64&distro=debian-12"
    assert component["purl"] == component["bom-ref"] == expected
    assert component["name"] == "libstdc++6" and component["version"] == "12.2.0-14+deb12u1"
    assert bom["dependencies"] == [{"ref": f"container:{IMAGE_ID}", "dependsOn": [expected]}]

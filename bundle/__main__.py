"""``python -m bundle``: build, verify and sign the offline release bundle.

    keygen --private-key FILE --public-key FILE     a new Ed25519 release key pair
    build --signing-key KEY [--release N] [--image REF] [--compliance DIR] [--out DIR]
          [--cache-dir DIR] [--keyless auto|never|require]
    verify BUNDLE --public-key KEY [--installed-release N]
           [--keyless-identity ID --keyless-issuer URL] [--json]

``build`` prints a JSON summary (path, SHA-256, size, release, seconds). ``verify``
prints every check it passed and ``VERIFIED``, or ``FAILED: <problem>`` and exits 1.
Exit 2: bad usage, a key that cannot be loaded, or a build that failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bundle.build import DEFAULT_CACHE, DEFAULT_OUT, BuildOptions, BundleError, build_bundle
from bundle.sbom import SbomError
from bundle.signing import SigningError, keygen
from bundle.verify import VerificationError, verify_bundle
from containers.commands import ContainerBuildError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bundle",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    keys = sub.add_parser("keygen", help="create an Ed25519 release key pair")
    keys.add_argument("--private-key", type=Path, required=True)
    keys.add_argument("--public-key", type=Path, required=True)

    make = sub.add_parser("build", help="build the signed bundle")
    make.add_argument("--signing-key", type=Path, required=True, help="Ed25519 PEM (PKCS#8)")
    make.add_argument("--release", type=int, help="release number (default: git commit count)")
    make.add_argument("--image", help="bundle this local image (default: build the CPU image)")
    make.add_argument("--compliance", type=Path, help="rendered documents (default: render)")
    make.add_argument("--out", type=Path, default=DEFAULT_OUT)
    make.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    make.add_argument("--keyless", choices=["auto", "never", "require"], default="auto")

    check = sub.add_parser("verify", help="verify a bundle offline against a pinned key")
    check.add_argument("bundle", type=Path)
    check.add_argument("--public-key", type=Path, required=True)
    check.add_argument("--installed-release", type=int, help="require a release above this")
    check.add_argument("--keyless-identity", help="expected signer of the keyless signature")
    check.add_argument("--keyless-issuer", help="its OIDC issuer URL")
    check.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "keygen":
            hint = keygen(args.private_key, args.public_key)
            print(f"Ed25519 release key {hint}: private {args.private_key} (keep it offline), "
                  f"public {args.public_key} (pin it at every site)")  # fmt: skip
            return 0
        if args.command == "build":
            built = build_bundle(
                BuildOptions(
                    signing_key=args.signing_key,
                    release=args.release,
                    image_ref=args.image,
                    out_dir=args.out,
                    cache_dir=args.cache_dir,
                    compliance_dir=args.compliance,
                    keyless=args.keyless,
                )
            )
            print(json.dumps({
                "bundle": str(built.path), "sha256": built.sha256,
                "size_bytes": built.size_bytes, "release": built.manifest.release,
                "version": built.manifest.version, "git_commit": built.manifest.git_commit,
                "files": len(built.manifest.files), "seconds": round(built.seconds, 1),
                "keyless": built.keyless,
            }, indent=2))  # fmt: skip
            return 0
        try:
            result = verify_bundle(
                args.bundle,
                args.public_key,
                installed_release=args.installed_release,
                keyless_identity=args.keyless_identity,
                keyless_issuer=args.keyless_issuer,
            )
        except VerificationError as problem:
            if args.json:
                print(json.dumps({"verified": False, "problem": str(problem)}))
            else:
                print(f"FAILED: {args.bundle.name}: {problem}")
            return 1
        if args.json:
            assert result.manifest is not None
            print(json.dumps({
                "verified": True, "checked": result.checked,
                "release": result.manifest.release, "version": result.manifest.version,
            }, indent=2))  # fmt: skip
        else:
            for line in result.checked:
                print(f"ok  {line}")
            print(f"VERIFIED: {args.bundle.name}")
        return 0
    except (SigningError, BundleError, SbomError, ContainerBuildError, OSError) as error:
        print(f"bundle {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

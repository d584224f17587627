"""Load the ensemble: verify every member file against the manifest; sessions open on use.

Nothing is handed to ONNX Runtime before its bytes have been hashed and matched against
the manifest (a non-negotiable of the product): a missing, truncated or altered file stops
loading with a ``ModelIntegrityError`` naming that file.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from models.manifest import EnsembleManifest, Member, read_manifest

# Most capable first; the first one this onnxruntime build offers is used.
PROVIDER_PREFERENCE = (
    "TensorrtExecutionProvider",
    "CUDAExecutionProvider",
    "OpenVINOExecutionProvider",
    "CPUExecutionProvider",
)


def cpu_has_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """True where the CPU has bfloat16 instructions (AVX512-BF16 or AMX-BF16), as Linux says.

    Elsewhere a bf16 request to OpenVINO silently runs fp32: a check of bf16 must know.
    """
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next(
        (line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")),
        [],
    )
    return "avx512_bf16" in flags or "amx_bf16" in flags


class ModelIntegrityError(RuntimeError):
    """A model file is missing or does not match its manifest entry."""

    def __init__(self, file: Path, reason: str) -> None:
        super().__init__(f"model file {file}: {reason}")
        self.file = file
        self.reason = reason


def read_verified(model_dir: Path, member: Member) -> bytes:
    """The member's bytes, once their size and SHA-256 match the manifest.

    The session is created from these very bytes, so the file cannot change between the
    check and the load.
    """
    path = model_dir / member.file
    if not path.is_file():
        raise ModelIntegrityError(path, "missing")
    size = path.stat().st_size
    if size != member.size_bytes:
        kind = "truncated" if size < member.size_bytes else "altered (size differs)"
        raise ModelIntegrityError(path, f"{kind}: {size} bytes, manifest says {member.size_bytes}")
    content = path.read_bytes()
    actual = hashlib.sha256(content).hexdigest()
    if actual != member.sha256:
        raise ModelIntegrityError(
            path, f"altered: SHA-256 {actual} does not match manifest {member.sha256}"
        )
    return content


def choose_providers(
    requested: Sequence[str] | None = None, available: Sequence[str] | None = None
) -> list[str]:
    """Execution providers to use, best first.

    ``requested`` (from config) overrides the preference order but must be available;
    CPU is always appended as the fallback ONNX Runtime needs.
    """
    offered = list(available if available is not None else ort.get_available_providers())
    if requested:
        missing = [name for name in requested if name not in offered]
        if missing:
            raise ValueError(
                f"execution provider(s) {missing} requested but this onnxruntime offers {offered}"
            )
        chosen = list(requested)
    else:
        chosen = [name for name in PROVIDER_PREFERENCE if name in offered]
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


class LoadedMember:
    """A verified member; its ONNX Runtime session is opened on first use.

    A study runs only the members of its modality (``LoadedEnsemble.members_for``), so a
    process that never sees an MR study never pays for opening the MR members.
    """

    def __init__(
        self, member: Member, content: bytes, open_session: Callable[[bytes], ort.InferenceSession]
    ) -> None:
        self.member = member
        self._content: bytes | None = content
        self._open_session = open_session
        self._session: ort.InferenceSession | None = None
        self._lock = threading.Lock()

    @property
    def session(self) -> ort.InferenceSession:
        with self._lock:
            if self._session is None:
                assert self._content is not None
                self._session = self._open_session(self._content)
                self._content = None  # the session holds the network now
            return self._session

    @property
    def is_open(self) -> bool:
        """Whether its session has been opened (a study of its modality was run)."""
        return self._session is not None

    @property
    def input_name(self) -> str:
        return str(self.session.get_inputs()[0].name)


@dataclass(frozen=True)
class LoadedEnsemble:
    model_dir: Path
    manifest: EnsembleManifest
    members: tuple[LoadedMember, ...]
    providers: tuple[str, ...]

    def open_sessions(self) -> None:
        """Open every member's session now, so that a failure shows at start."""
        for loaded in self.members:
            loaded.session  # noqa: B018  (the property opens it)

    def members_for(self, modality: str) -> tuple[LoadedMember, ...]:
        """The loaded members run on ``modality`` studies (``EnsembleManifest.members_for``)."""
        names = {m.name for m in self.manifest.members_for(modality)}
        return tuple(m for m in self.members if m.member.name in names)


def provider_entries(
    providers: Sequence[str], threads: int | None, bf16: bool = False
) -> list[str | tuple[str, dict[str, str]]]:
    """Providers with their options, as ``InferenceSession(providers=...)`` takes them.

    ``bf16`` lets OpenVINO run in bfloat16 on CPUs with bf16 instructions (AVX512-BF16,
    AMX; elsewhere it stays fp32): about 1.5-2x faster on our 3D convolutions, with
    probabilities within ~2e-2 of fp32; the benchmark checks the ensemble Dice on the
    locked test split stays within 0.005 of fp32.
    """
    entries: list[str | tuple[str, dict[str, str]]] = []
    for name in providers:
        if name == "OpenVINOExecutionProvider":
            options = {"device_type": "CPU", "precision": "FP32"}
            if bf16:
                options["load_config"] = json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": "bf16"}})
            if threads:
                options["num_of_threads"] = str(threads)
            entries.append((name, options))
        else:
            entries.append(name)
    return entries


def session_options(threads: int | None = None) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return options


def load_ensemble(
    model_dir: Path,
    providers: Sequence[str] | None = None,
    threads: int | None = None,
    bf16: bool = False,
) -> LoadedEnsemble:
    """Read the manifest and verify *all* members; each session opens on first use."""
    manifest = read_manifest(model_dir)
    # Verify everything first so a bad last member fails before any session is created.
    contents = [read_verified(model_dir, member) for member in manifest.members]
    chosen = choose_providers(providers)
    options = session_options(threads)
    entries = provider_entries(chosen, threads, bf16)

    def open_session(content: bytes) -> ort.InferenceSession:
        return ort.InferenceSession(content, sess_options=options, providers=entries)

    loaded = tuple(
        LoadedMember(member, content, open_session)
        for member, content in zip(manifest.members, contents, strict=True)
    )
    return LoadedEnsemble(model_dir, manifest, loaded, tuple(chosen))

"""Pin the CPU kernels the builder trains with, so another machine gives the same bytes.

PyTorch, oneDNN and MKL each pick their fastest kernels for the CPU they find (AVX-512
here, AVX2 elsewhere), and kernels of different vector widths sum in different orders:
the same seed then gives different weights on two machines of "the same kind" (issue 11
saw test Dice 0.8905 vs 0.8829 and an OOD threshold 15 % apart). The builder therefore
caps all three at AVX2, which every x86-64 machine of this kind has, and trains with a
fixed thread count. These variables are read when the libraries load, so they are set
when ``models.builder`` is imported, before torch is.
"""

from __future__ import annotations

import os

PINNED_KERNELS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorised kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # convolutions (oneDNN)
    "DNNL_MAX_CPU_ISA": "AVX2",  # the same, for older oneDNN builds
    "MKL_CBWR": "AVX2",  # MKL conditional numerical reproducibility
}


def pin_cpu_kernels() -> dict[str, str]:
    """Set the kernel caps (overriding the caller's) and return them for the manifest."""
    os.environ.update(PINNED_KERNELS)
    return dict(PINNED_KERNELS)


def cpu_capability() -> str:
    """The kernel level torch actually runs with (AVX2 once pinned before import)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())

"""Hot operators: each a readable PyTorch reference beside a Triton kernel, one dispatching function per op.

=====================  ==========================================  ======================================
op                     dispatching function                        reference(s)
=====================  ==========================================  ======================================
Mamba-2 SSD scan       :func:`ssd_scan` / :func:`ssd_step`         ``ssd_chunked_reference``,
                                                                   ``ssd_recurrent_reference``
causal short conv      :func:`causal_conv1d` /                     ``causal_conv1d_reference``
                       :func:`causal_conv1d_step`
Mamba-1 selective      :func:`selective_scan`                      ``selective_scan_chunked_reference``,
scan                                                               ``selective_scan_recurrent_reference``
=====================  ==========================================  ======================================

Backend choice (first match wins): the op's ``backend=`` argument, the innermost
``with use_backend("reference" | "triton" | "auto"):`` block, the ``GENOSEQ_KERNELS``
environment variable, else ``auto`` (Triton on CUDA tensors, the reference elsewhere).
"""

from ._dispatch import BACKENDS, resolve_backend, triton_available, use_backend
from ._utils import segment_ids
from .conv1d import causal_conv1d, causal_conv1d_reference, causal_conv1d_step
from .selective_scan import (
    selective_scan,
    selective_scan_chunked_reference,
    selective_scan_recurrent_reference,
)
from .ssd import ssd_chunked_reference, ssd_recurrent_reference, ssd_scan, ssd_step

__all__ = [
    "BACKENDS",
    "causal_conv1d",
    "causal_conv1d_reference",
    "causal_conv1d_step",
    "resolve_backend",
    "segment_ids",
    "selective_scan",
    "selective_scan_chunked_reference",
    "selective_scan_recurrent_reference",
    "ssd_chunked_reference",
    "ssd_recurrent_reference",
    "ssd_scan",
    "ssd_step",
    "triton_available",
    "use_backend",
]

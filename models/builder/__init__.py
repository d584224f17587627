"""The model builder: training, ONNX export, evaluation and the manifest (``make models``)."""

from models.builder.determinism import pin_cpu_kernels

pin_cpu_kernels()

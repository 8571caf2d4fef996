"""webrt: compile models through Apache TVM into WebGPU kernels and run them in any browser."""

__version__ = "0.1.0"

"""Hot operators: each a readable PyTorch reference beside a Triton kernel, one dispatching function per op."""

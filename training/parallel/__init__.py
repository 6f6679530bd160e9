"""Processes and devices: the distributed world (torchrun, accelerate), launch commands for one or
several machines, the memory estimate, and FSDP sharding on the CPU too."""

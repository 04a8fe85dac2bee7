"""The local development kit: the stack of emulators and functions (``python -m devstack.stack``), the Cloud
Tasks emulator launcher, and synthetic lesion photos for the demo, the benchmark and the tests."""

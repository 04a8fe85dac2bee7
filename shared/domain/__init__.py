"""The job domain: the job document's state machine. Pure: no I/O, no HTTP, no cloud."""

"""The parts of a training run that `smoothbench.train` tells its story with: checks of the run
dir (`checks`), resume planning (`resume`), building (`setup`), the run's state and operations
(`session`), a probe step (`probe_step`), the record (`record`), signals (`signals`), progress
(`progress`) and the entry point's own files (`hydra_output`).

Nothing is imported here: `smoothbench-train --help` stays fast (torch loads only for a run).
"""

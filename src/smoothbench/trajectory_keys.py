"""The config keys that never change a run's training trajectory.

A resumed run may differ from its checkpoint in these (probes are side-effect free, tested;
`device` and `threads` change only the last bits of the floats, and provenance.json keeps the
first process's), and a W&B run name leaves their overrides out (bookkeeping, and a resume may
change them). One list for both: `config.trajectory_config` and `sinks`.
"""

NON_TRAJECTORY_KEYS = (
    "steps",
    "eval_every",
    "eval_batch_size",
    "checkpoint_every",
    "keep_checkpoints",
    "progress",
    "experiment",
    "scale",
    "probes",
    "logger",
    "device",
    "threads",
    "resume",
)

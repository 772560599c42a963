"""Full-Duplex-Bench as a Slurm job array: submit, status, report, resubmit (see the README)."""

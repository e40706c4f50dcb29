"""Training: fine-tuning and from-scratch training (`finetune`), calibration folded into the head
(`calibrate`), the architecture factory (`models`), leave-one-source-out ablations (`ablation`),
copy-paste synthesis (`synth`) and camera-look randomization (`camera`).

Nothing heavy is imported here: `python -m roadwork.train` runs a training without typer, and the
synthesis modules import this package too.
"""

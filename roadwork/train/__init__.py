"""Training: fine-tuning and from-scratch training (`finetune`), calibration folded into the head
(`calibrate`), the architecture factory (`models`), leave-one-source-out ablations (`ablation`)
and camera-look randomization (`camera`). Synthesis lives in `roadwork.synth`.

Nothing heavy is imported here: `python -m roadwork.train` runs a training without typer.
"""

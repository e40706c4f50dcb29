"""Training: fine-tuning and from-scratch training (`finetune`, settings in `config`), temperature and
threshold folded into the head (`temperature`), the architecture factory (`models`), distillation
(`distill`), leave-one-source-out ablations (`ablation`), camera-look randomization (`camera`) and
fitting the colour tier (`color`). Synthesis lives in `roadwork.synth`.

Nothing heavy is imported here: `python -m roadwork.train` runs a training without typer.
"""

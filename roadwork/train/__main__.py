"""`python -m roadwork.train ...`: `roadwork train` without typer (for bare GPU machines)."""

from roadwork.train.finetune import main

raise SystemExit(main())

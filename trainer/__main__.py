"""``python -m trainer --project P ...`` (also what ``torchrun -m trainer`` launches)."""

from trainer.loop import main

raise SystemExit(main())

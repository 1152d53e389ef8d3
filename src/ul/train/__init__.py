"""Training: the loop (ul.train.loop), checkpoints, data parallelism, precision, FLOP counting and
the rate target (a loop callback). Imports ul.core and ul.common only."""

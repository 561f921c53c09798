"""`TrainingError`: what a run that cannot go on as asked raises, its message saying why and what to do instead.

A module of its own because refusals come from several places (an unsupported strategy, an unreadable resume
state) that sit below `train`, and `artnet train` turns any of them into one line without a traceback.
"""


class TrainingError(RuntimeError):
    """A run that cannot go on as asked; the message says why and what to do."""

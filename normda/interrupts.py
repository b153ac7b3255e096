"""Ctrl-C and a scheduler's SIGTERM end a run cleanly: the trainer finishes the step it is in, saves a checkpoint
(with the partial sums of the training losses, so the resumed run's numbers equal an uninterrupted run's), and
``train.py`` prints one line and exits with 128 + the signal's number (130 for SIGINT, 143 for SIGTERM). A second
signal while the first is being handled stops the process at once, keeping the checkpoint already on disk."""
from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """Raised by the trainer once it has saved the interrupted run (a ``BaseException``, like ``KeyboardInterrupt``:
    no ``except Exception`` records it as a failure, and Hydra stops the sweep)."""

    def __init__(self, step: int, signal_number: int):
        super().__init__(f"interrupted at iteration {step}")
        self.step = step
        self.signal_number = signal_number

    @property
    def exit_status(self) -> int:
        return 128 + self.signal_number

    def message(self) -> str:
        name = signal.Signals(self.signal_number).name
        return (f"interrupted at iteration {self.step} ({name}); its checkpoint is saved: run the same command to "
                f"resume")


class Interrupts:
    """While entered (in the main thread; a no-op elsewhere or when ``enabled`` is false), SIGINT and SIGTERM set
    :attr:`requested` to the signal's number instead of stopping the process."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signal_number: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            print(f"error: interrupted again ({signal.Signals(signal_number).name}): stopping now; the last "
                  f"checkpoint stands", file=sys.stderr, flush=True)
            os._exit(128 + signal_number)
        self.requested = signal_number

    def __enter__(self) -> "Interrupts":
        if self.enabled:
            self._previous = {number: signal.signal(number, self._handle) for number in SIGNALS}
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)

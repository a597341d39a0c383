"""``StepProgressBar``: one bar over the whole run, ``step 120/1000`` with an ETA, instead of per-epoch bars.

Fine-tuning is sized by ``max_steps`` (``max_epochs`` is -1, which Lightning's bars print as
``Epoch 0/-2``), and a small data set makes epochs of a few batches: the epoch number says nothing about
how far the run is. This bar counts optimizer steps (``trainer.global_step``, what ``max_steps`` stops on),
so its ETA is the time to the end of the run; the latest ``train/*`` metrics follow it.
"""

from __future__ import annotations

import warnings

from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar

# Deprecation warnings raised inside Lightning (not by our code) that would leak into every training log.
KNOWN_WARNINGS = (
    r".*isinstance\(treespec, LeafSpec\).* is deprecated",  # torch's pytree API, called by lightning's _pytree
)


def silence_known_warnings() -> None:
    """Ignore the library-internal deprecation warnings listed in :data:`KNOWN_WARNINGS`."""
    for pattern in KNOWN_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def _metrics_text(metrics: dict, limit: int = 3) -> str:
    shown = [(k.split("/", 1)[-1], v) for k, v in sorted(metrics.items()) if k.startswith("train/")
             and not k.endswith("_per_s") and k != "train/lr"]
    return " ".join(f"{k}={float(v):.4g}" for k, v in shown[:limit])


class StepProgressBar(ProgressBar):
    """A rich bar of ``global_step`` out of ``max_steps`` with elapsed time and ETA (rank 0 only)."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._progress = None
        self._task = None

    @property
    def is_enabled(self) -> bool:
        trainer = getattr(self, "_trainer", None)  # asked before the trainer is attached, too
        return self._enabled and (trainer is None or trainer.is_global_zero)

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def setup(self, trainer, pl_module, stage: str) -> None:
        super().setup(trainer, pl_module, stage)  # attaches the trainer
        silence_known_warnings()

    def _total(self, trainer) -> int | None:
        steps = int(trainer.max_steps)
        return steps if steps > 0 else None  # -1: no step budget (an epoch budget): indeterminate bar

    def on_train_start(self, trainer, pl_module) -> None:
        if not self.is_enabled:
            return
        from rich.console import Console
        from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn,
                                   TimeRemainingColumn)

        self._progress = Progress(TextColumn("step"), MofNCompleteColumn(), BarColumn(), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[metrics]}"),
                                  console=Console(stderr=True), transient=False)
        self._progress.start()
        self._task = self._progress.add_task("train", total=self._total(trainer), completed=trainer.global_step,
                                             metrics="")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=trainer.global_step,
                                  metrics=_metrics_text(trainer.progress_bar_metrics))

    def _stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def on_train_end(self, trainer, pl_module) -> None:
        self._stop()

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._stop()

    def teardown(self, trainer, pl_module, stage: str) -> None:
        self._stop()

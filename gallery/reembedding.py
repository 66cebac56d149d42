"""One model per search: the check that refuses to mix models, and the cure, re-embedding from stored chips.

Descriptors of different networks cannot be compared, so a gallery holding faces of another
(older) model refuses to enrol, identify or verify until they are re-embedded from the face
chips stored beside them.
"""

from __future__ import annotations

import numpy as np

from gallery.enrolment import stored_chip_pixels
from gallery.errors import ModelMismatch
from gallery.store import Store
from gallery.vision.pipeline import ChipEmbedder


class OneModel:
    """Keeps one gallery's faces to the pipeline's model ``model_id``."""

    def __init__(self, store: Store, model_id: str) -> None:
        self._store = store
        self._model_id = model_id
        self._others = self._faces_of_other_models()

    def require(self) -> None:
        """Refuse to work while some faces come from another model: searches could not see them.

        Raises:
            ModelMismatch: the gallery holds faces of another model.
        """
        if self._others:  # look again: another process may have re-embedded them meanwhile
            self._others = self._faces_of_other_models()
        if self._others:
            found = ", ".join(f"{count} by {model!r}" for model, count in sorted(self._others.items()))
            raise ModelMismatch(
                f"this gallery holds faces embedded by another model ({found}), which cannot be compared "
                f"with {self._model_id!r}; run `gallery reembed` (Gallery.reembed()) to re-embed "
                "them from their stored face chips"
            )

    def reembed(self, embedder: ChipEmbedder, *, batch_size: int) -> tuple[int, list[str]]:
        """Re-embed every face of another model from its chip, in batches written as they are done.

        Returns:
            How many faces were re-embedded, and the models they came from.
        """
        tasks = self._store.faces_to_reembed()
        models = sorted({task.model for task in tasks})
        for start in range(0, len(tasks), batch_size):
            batch = tasks[start : start + batch_size]
            chips = np.stack([stored_chip_pixels(task.face_id, task.chip_jpeg) for task in batch])
            embeddings = embedder.embed(chips)
            self._store.reembed({task.face_id: vector for task, vector in zip(batch, embeddings, strict=True)})
        self._others = self._faces_of_other_models()
        return len(tasks), models

    def _faces_of_other_models(self) -> dict[str, int]:
        by_model = self._store.stats().faces_by_model
        return {model: count for model, count in by_model.items() if model != self._model_id}

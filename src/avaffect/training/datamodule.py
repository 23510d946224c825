"""Windows of per-recording features as a Lightning data module (docs/design.md §2, §7); the resumable
training loader of mid-epoch checkpoints (``training.checkpoint_every_n_steps``)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from avaffect.data.windows import cut_window, window_mask, window_starts
from avaffect.features.run_features import RecordingFeatures


class WindowDataset(Dataset):
    """Every window of every recording: ``audio, video, labels (NaN outside annotations), mask
    (step inside the recording), face_mask, rec (index), start``. A window's features are read from the store when
    it is asked for (:class:`~avaffect.features.store.StoredFeatures`): no process holds the data set."""

    def __init__(self, recordings: list[RecordingFeatures], length: int, hop: int) -> None:
        self.recordings = recordings
        self.length = length
        starts = [window_starts(len(r), length, hop) for r in recordings]
        # two flat arrays, not a list of tuples: no Python object per window (a fork()ed DataLoader worker touching
        # millions of refcounts would copy the pages that hold them)
        self.rec_index = np.concatenate([np.full(len(s), i, dtype=np.int64) for i, s in enumerate(starts)] or
                                        [np.zeros(0, dtype=np.int64)])
        self.starts = np.concatenate(starts or [np.zeros(0, dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        i, s = int(self.rec_index[j]), int(self.starts[j])
        r, n = self.recordings[i], self.length
        return {
            "audio": torch.as_tensor(cut_window(r.audio, s, n), dtype=torch.float32),
            "video": torch.as_tensor(cut_window(r.video, s, n), dtype=torch.float32),
            "labels": torch.as_tensor(cut_window(r.labels, s, n, np.nan), dtype=torch.float32),
            "mask": torch.as_tensor(window_mask(len(r), s, n)),
            "face_mask": torch.as_tensor(cut_window(r.face_mask, s, n, False)),
            "rec": torch.tensor(i),
            "start": torch.tensor(s),
        }


class _EpochSampler(Sampler[int]):
    """A fresh permutation per epoch drawn from ``(seed, epoch)`` alone, from position ``skip`` on."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.epoch, self.skip = n, seed, 0, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls it at every epoch start
        self.epoch = int(epoch)

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order, self.skip = torch.randperm(self.n, generator=g)[self.skip:].tolist(), 0
        return iter(order)

    def __len__(self) -> int:
        return self.n


class ResumableLoader(DataLoader):
    """The shuffled training loader, with its position in the epoch saved in Lightning checkpoints
    (``state_dict`` / ``load_state_dict``): a run resumed from a mid-epoch checkpoint goes on with the next batch
    of the same epoch's permutation — no window seen twice, none skipped."""

    def __init__(self, data: Dataset, batch_size: int, seed: int, **kwargs) -> None:
        self._order = _EpochSampler(len(data), seed)
        # its own generator: creating an iterator draws a seed from the loader's generator, and from the global
        # RNG without one — a resumed run creates one iterator more than the uninterrupted run did, and would
        # shift every later dropout mask
        super().__init__(data, batch_size=batch_size, sampler=self._order,
                         generator=torch.Generator().manual_seed(seed), **kwargs)
        self._delivered = 0
        self._resume_at = 0

    def __iter__(self):
        start, self._resume_at = self._resume_at, 0
        self._order.skip = start * int(self.batch_size)
        self._delivered = start
        for batch in super().__iter__():
            self._delivered += 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch": self._order.epoch, "delivered": self._delivered}

    def load_state_dict(self, state: dict) -> None:
        self._order.epoch, self._resume_at = int(state["epoch"]), int(state["delivered"])


class WindowDataModule(L.LightningDataModule):
    """Training windows (shuffled) and validation windows (in order, for stitching). ``train`` and ``val`` are
    recordings' features (cut into :class:`WindowDataset` windows) or ready window datasets (end-to-end inputs);
    ``pin_memory``: page-locked batches for a fast copy to a GPU (off on the CPU)."""

    def __init__(self, train: list[RecordingFeatures] | Dataset, val: list[RecordingFeatures] | Dataset,
                 length: int, hop: int, batch_size: int = 8, num_workers: int = 0,
                 pin_memory: bool = False, resumable_seed: int | None = None) -> None:
        super().__init__()
        self.resumable_seed = resumable_seed  # not None: a ResumableLoader (mid-epoch checkpoints; one process)
        self.train_set = train if isinstance(train, Dataset) else WindowDataset(train, length, hop)
        self.val_set = val if isinstance(val, Dataset) else WindowDataset(val, length, hop)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        one_process = self.trainer is None or self.trainer.world_size == 1
        if self.resumable_seed is not None and one_process:
            return ResumableLoader(self.train_set, self.batch_size, self.resumable_seed, num_workers=self.num_workers,
                                   persistent_workers=self.num_workers > 0, pin_memory=self.pin_memory)
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

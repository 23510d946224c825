"""Windows of per-recording features as a Lightning data module (SPEC §2, §7)."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from avaffect.data.windows import cut_window, window_mask, window_starts
from avaffect.features.pipeline import RecordingFeatures


class WindowDataset(Dataset):
    """Every window of every recording: ``audio, video, labels (NaN outside annotations), mask
    (step inside the recording), face_mask, rec (index), start``."""

    def __init__(self, recordings: list[RecordingFeatures], length: int, hop: int) -> None:
        self.recordings = recordings
        self.length = length
        self.index = [(i, int(s)) for i, r in enumerate(recordings) for s in window_starts(len(r), length, hop)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, j: int) -> dict[str, torch.Tensor]:
        i, s = self.index[j]
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


class WindowDataModule(L.LightningDataModule):
    """Training windows (shuffled) and validation windows (in order, for stitching). ``train`` and ``val`` are
    recordings' features (cut into :class:`WindowDataset` windows) or ready window datasets (end-to-end inputs);
    ``pin_memory``: page-locked batches for a fast copy to a GPU (off on the CPU)."""

    def __init__(self, train: list[RecordingFeatures] | Dataset, val: list[RecordingFeatures] | Dataset,
                 length: int, hop: int, batch_size: int = 8, num_workers: int = 0,
                 pin_memory: bool = False) -> None:
        super().__init__()
        self.train_set = train if isinstance(train, Dataset) else WindowDataset(train, length, hop)
        self.val_set = val if isinstance(val, Dataset) else WindowDataset(val, length, hop)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory

    def _loader(self, data: Dataset, shuffle: bool) -> DataLoader:
        return DataLoader(data, batch_size=self.batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=self.pin_memory)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, False)

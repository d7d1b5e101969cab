"""The Lightning stop's LightningDataModule and LightningModule, defined at module level so they pickle
(DataLoader workers under spawn, Lightning's own checkpoint reload) and imported only by tour/lightning.py when it
runs: this file imports lightning, and importing the stop must stay cheap.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, TensorDataset

from tour.core.data import digits_split
from tour.core.models import make_mlp


class DigitsData(L.LightningDataModule):
    """Owns the data: the same stratified split and the same seeded shuffle as the plain loop."""

    def __init__(self, batch_size: int, test_fraction: float, seed: int):
        super().__init__()
        self.batch_size, self.test_fraction, self.seed = batch_size, test_fraction, seed

    def setup(self, stage: str | None = None):
        self.train, self.test = digits_split(self.test_fraction, self.seed)

    def train_dataloader(self):
        return DataLoader(TensorDataset(*self.train), batch_size=self.batch_size, shuffle=True,
                          generator=torch.Generator().manual_seed(self.seed))

    def val_dataloader(self):  # the held-out digits, reported each epoch (nothing is selected on them)
        return DataLoader(TensorDataset(*self.test), batch_size=512)

    test_dataloader = val_dataloader

class LitDigits(L.LightningModule):
    """The model plus what to do with a batch; the Trainer owns the loop, devices, checkpoints, logs."""

    def __init__(self, hidden: int, lr: float):
        super().__init__()
        self.save_hyperparameters()  # stored in every checkpoint, so load_from_checkpoint rebuilds it
        self.net = make_mlp(hidden)

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.cross_entropy(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True)  # epoch mean, like basics
        return loss  # Lightning calls zero_grad, backward and step with it

    def _accuracy(self, batch, name):
        x, y = batch
        self.log(name, (self(x).argmax(dim=1) == y).float().mean(), prog_bar=True)

    def validation_step(self, batch, batch_idx):
        self._accuracy(batch, "val_acc")

    def test_step(self, batch, batch_idx):
        self._accuracy(batch, "test_acc")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)

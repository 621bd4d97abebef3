"""A KV cache layer with room for the answers, for the in-process teacher's decoding loop."""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


def empty_states(states, rows: int, length: int):
    """Zeros shaped like a layer's cached states [batch, heads, length, head_dim], for `rows` rows of `length`."""
    return states.new_zeros(rows, states.shape[1], length, states.shape[3])


class RoomyLayer(DynamicLayer):
    """A layer's cached states in buffers with room for the answers: a step writes its position in place.

    `DynamicLayer` appends each step's states by `torch.cat`, copying the whole cache every step (11.4 %
    of the quickstart's decoding in a profile); here `keys` / `values` are views of the buffers' filled
    positions. A step past the room grows the buffers as `DynamicLayer` would.
    """

    def __init__(self, keys, values, length: int):
        super().__init__()
        self.device = keys.device
        self.is_initialized = True
        self._buffers = (keys, values)
        self._length = length
        self._view()

    def _view(self) -> None:
        self.keys, self.values = (buffer[:, :, : self._length] for buffer in self._buffers)

    def update(self, key_states, value_states, *args, **kwargs):
        end = self._length + key_states.shape[-2]
        if end > self._buffers[0].shape[-2]:
            self._buffers = tuple(
                torch.cat([buffer, empty_states(buffer, buffer.shape[0], end - buffer.shape[-2])], dim=-2)
                for buffer in self._buffers
            )
        self._buffers[0][:, :, self._length : end] = key_states
        self._buffers[1][:, :, self._length : end] = value_states
        self._length = end
        self._view()
        return self.keys, self.values

    def batch_select_indices(self, indices) -> None:
        """Keep the rows `indices` names, in that order; rows that keep their place are not copied."""
        order = indices.tolist()
        moves = [(place, row) for place, row in enumerate(order) if row != place]
        if all(row >= len(order) for _, row in moves):  # each moved row comes from past the rows kept: no overwrite
            if moves:
                targets, sources = (torch.tensor(side, device=indices.device) for side in zip(*moves))
                for buffer in self._buffers:
                    buffer[targets, :, : self._length] = buffer[sources, :, : self._length]
            self._buffers = tuple(buffer[: len(order)] for buffer in self._buffers)
        else:
            self._buffers = tuple(buffer[indices] for buffer in self._buffers)
        self._view()

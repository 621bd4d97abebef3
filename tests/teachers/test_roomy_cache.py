"""The decoding loop's KV cache layer: answers written into its room, rows kept or moved."""

from __future__ import annotations

import torch

from synthdistill.teachers.roomy_cache import RoomyLayer


def test_the_cache_writes_answers_into_its_room_and_grows_past_it():
    keys, values = torch.randn(4, 2, 3, 8), torch.randn(4, 2, 3, 8)
    layer = RoomyLayer(torch.cat([keys, torch.zeros(4, 2, 2, 8)], dim=2), torch.cat([values, values[:, :, :2]], 2), 3)
    expected_keys, expected_values = keys, values
    for step in range(4):  # two steps in the room, two past it
        new_keys, new_values = torch.randn(4, 2, 1, 8), torch.randn(4, 2, 1, 8)
        returned = layer.update(new_keys, new_values)
        expected_keys = torch.cat([expected_keys, new_keys], dim=2)
        expected_values = torch.cat([expected_values, new_values], dim=2)
        assert torch.equal(returned[0], expected_keys) and torch.equal(returned[1], expected_values)
        assert layer.get_seq_length() == 4 + step
    layer.batch_select_indices(torch.tensor([0, 3, 2]))  # row 3 moves into row 1's place, the rest stay
    assert torch.equal(layer.keys, expected_keys[[0, 3, 2]]) and torch.equal(layer.values, expected_values[[0, 3, 2]])
    layer.batch_select_indices(torch.tensor([2, 0]))  # a reordering: copied
    assert torch.equal(layer.keys, expected_keys[[2, 0]]) and torch.equal(layer.values, expected_values[[2, 0]])
    layer.update(torch.ones(2, 2, 1, 8), torch.ones(2, 2, 1, 8))
    assert layer.keys.shape == (2, 2, 8, 8) and torch.equal(layer.keys[:, :, -1], torch.ones(2, 2, 8))
    assert torch.equal(layer.keys[:, :, :-1], expected_keys[[2, 0]])

"""Known answers for the attention layers and blocks."""

import torch

from sirst.layers import ChannelAttention, ResCBAMBlock, SpatialAttention


def test_channel_attention_known_answer():
    ca = ChannelAttention(32)  # hidden width 2
    torch.nn.init.constant_(ca.fc1.weight, 1.0)
    torch.nn.init.constant_(ca.fc2.weight, 0.5)
    x = torch.zeros(1, 32, 2, 2)
    x[0, :, 0, 0] = 1.0  # mean 0.25, max 1 per channel
    # avg path: hidden = relu(32 * 0.25) = 8 each, out = 0.5 * 2 * 8 = 8; max path: hidden 32, out 32
    expected = torch.sigmoid(torch.tensor(8.0 + 32.0))
    torch.testing.assert_close(ca(x), expected.expand(1, 32, 1, 1))


def test_spatial_attention_known_answer():
    sa = SpatialAttention()
    with torch.no_grad():
        sa.conv1.weight.zero_()
        sa.conv1.weight[0, 0, 3, 3] = 1.0  # mean channel, centre tap
        sa.conv1.weight[0, 1, 3, 3] = -1.0  # max channel, centre tap
    x = torch.tensor([[[[1.0, 2.0]], [[3.0, 0.0]]]])  # (1, 2, 1, 2)
    mean = torch.tensor([2.0, 1.0])
    mx = torch.tensor([3.0, 2.0])
    torch.testing.assert_close(sa(x), torch.sigmoid(mean - mx).view(1, 1, 1, 2))


def test_res_cbam_shortcut_only_when_widths_differ():
    assert ResCBAMBlock(8, 8).shortcut is None
    block = ResCBAMBlock(4, 8)
    assert isinstance(block.shortcut[0], torch.nn.Conv2d) and block.shortcut[0].kernel_size == (1, 1)
    assert block(torch.randn(1, 4, 8, 8)).shape == (1, 8, 8, 8)

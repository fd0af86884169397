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


def _textbook_ca(ca: ChannelAttention, x: torch.Tensor) -> torch.Tensor:
    """CBAM channel attention exactly as written in the paper/public code (1x1 convs, two MLP calls)."""
    avg = ca.fc2(torch.relu(ca.fc1(x.mean(dim=(2, 3), keepdim=True))))
    mx = ca.fc2(torch.relu(ca.fc1(x.amax(dim=(2, 3), keepdim=True))))
    return torch.sigmoid(avg + mx)


def test_channel_attention_equals_textbook_formula_in_both_layouts():
    torch.manual_seed(0)
    for c in (16, 64):  # 16 channels in channels_last take the adaptive-pooling max
        ca = ChannelAttention(c).eval()
        x = torch.randn(3, c, 20, 24)
        for layout in (torch.contiguous_format, torch.channels_last):
            xl = x.contiguous(memory_format=layout)
            torch.testing.assert_close(ca(xl), _textbook_ca(ca, x), rtol=1e-6, atol=1e-6)


def test_global_max_equals_amax():
    from sirst.layers import global_max

    x = torch.randn(2, 16, 33, 17)
    for layout in (torch.contiguous_format, torch.channels_last):
        torch.testing.assert_close(global_max(x.contiguous(memory_format=layout)), x.amax(dim=(2, 3)), rtol=0, atol=0)


def test_res_cbam_block_equals_textbook_composition():
    torch.manual_seed(1)
    for attention in ("csam", "sum", "channel_only", "spatial_only", "none"):
        block = ResCBAMBlock(8, 16, attention).eval()
        x = torch.randn(2, 8, 12, 12)
        with torch.no_grad():
            out = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
            if attention == "sum":
                out = block.ca(out) * out + block.sa(out) * out
            else:
                if block.ca is not None:
                    out = block.ca(out) * out
                if block.sa is not None:
                    out = block.sa(out) * out
            expected = torch.relu(out + block.shortcut(x))
            torch.testing.assert_close(block(x), expected, rtol=1e-6, atol=1e-6)

import math

import pytest
import torch
import torch.nn.functional as F

import metatransformer as mt
from metatransformer.data2seq import TokenSequence
from metatransformer.data2seq.time_series import InstanceStats
from metatransformer.datasets import ForecastWindows
from metatransformer.heads.forecast import ForecastHead


def _features(batch=2, tokens=5, dim=8, cls=True):
    x = torch.randn(batch, tokens + cls, dim)
    return TokenSequence.with_prefix(x, torch.ones(batch, tokens + cls, dtype=torch.bool), int(cls))


def test_pooled_and_flattened_heads_give_horizon_by_channels():
    features = _features()
    pooled = ForecastHead(dim=8, horizon=24, channels=7)
    flat = ForecastHead(dim=8, horizon=24, channels=7, num_tokens=5, norm=False)
    assert pooled(features).shape == flat(features).shape == (2, 24, 7)
    body = features.tokens[:, 1:].flatten(1)  # the cls token is left out of the flattened tokens
    torch.testing.assert_close(flat(features), (body @ flat.fc.weight.T + flat.fc.bias).view(2, 24, 7))
    with pytest.raises(ValueError, match="5 content tokens, got 3"):
        flat(_features(tokens=3))


def test_padded_tokens_do_not_change_the_forecast():
    head = ForecastHead(dim=8, horizon=4, channels=2).eval()
    features = _features(batch=1, tokens=6, cls=False)
    mask = torch.tensor([[True] * 4 + [False] * 2])
    padded = TokenSequence(features.tokens, mask)
    noisy = TokenSequence(torch.cat([features.tokens[:, :4], torch.randn(1, 2, 8) * 100], 1), mask)
    short = TokenSequence(features.tokens[:, :4], mask[:, :4])
    torch.testing.assert_close(head(padded), head(short))
    torch.testing.assert_close(head(noisy), head(short))


def test_revin_statistics_denormalise_the_forecast():
    head = ForecastHead(dim=8, horizon=3, channels=2)
    series = torch.randn(2, 20, 2) * 4 + 10
    stats = InstanceStats.of(series)
    features = _features()
    torch.testing.assert_close(head(features, stats), head(features) * stats.std + stats.mean)


def test_losses_and_target_masks():
    outputs, target = torch.randn(2, 5, 3), torch.randn(2, 5, 3)
    assert torch.equal(ForecastHead(dim=4, horizon=5, channels=3).loss(outputs, target), F.mse_loss(outputs, target))
    mae = ForecastHead(dim=4, horizon=5, channels=3, loss_type="mae")
    assert torch.equal(mae.loss(outputs, target), F.l1_loss(outputs, target))
    steps = torch.tensor([[True] * 5, [True, True, False, False, False]])
    expected = torch.cat([(outputs - target)[0].abs().flatten(), (outputs - target)[1, :2].abs().flatten()]).mean()
    torch.testing.assert_close(mae.loss(outputs, target, steps), expected)


def test_a_frozen_encoder_forecast_beats_repeating_the_last_value():
    torch.manual_seed(0)
    t = torch.arange(3000, dtype=torch.float32)
    series = torch.stack([torch.sin(2 * math.pi * t / 24), torch.cos(2 * math.pi * t / 50)], 1)
    series = series + 0.05 * torch.randn_like(series)
    train, test = ForecastWindows(series[:2400], lookback=48, horizon=12), \
        ForecastWindows(series[2400:], lookback=48, horizon=12, stride=12)
    tokenizer = mt.create_tokenizer("time_series", 64, in_chans=2, tokens="patch", patch_len=8, patch_stride=8)
    encoder = mt.create_encoder("nano").freeze()
    head = ForecastHead(dim=64, horizon=12, channels=2, num_tokens=tokenizer.num_tokens(48))
    optimizer = torch.optim.AdamW([*tokenizer.parameters(), *head.parameters()], lr=3e-3)

    def forecast(x):
        seq = tokenizer(x)
        return head(seq.replace(tokens=encoder(seq.tokens, seq.mask)), tokenizer.instance_stats(x))

    loader = torch.utils.data.DataLoader(train, batch_size=32, shuffle=True)
    for _, (x, y) in zip(range(25), (batch for _ in range(10) for batch in loader)):
        loss = head.loss(forecast(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    x, y = map(torch.stack, zip(*test))
    with torch.no_grad():
        ours = head.loss(forecast(x), y)
    naive = F.mse_loss(x[:, -1:].expand_as(y), y)
    assert ours < 0.25 * naive, (float(ours), float(naive))

"""RED's combination and sampling filters, checked against the closed form without a model."""

import math

import pytest
import torch

from redgraph.decoding import rationale_lambdas, red_scores
from redgraph.decoding.red import sampling_logits
from redgraph.errors import ConfigError


def test_red_scores_is_the_closed_form_and_leaves_inputs_alone():
    torch.manual_seed(0)
    image = torch.randn(3, 11).log_softmax(-1)
    rationale = torch.randn(3, 2, 11).log_softmax(-1)
    lambdas = torch.tensor([[0.5, 0.25], [1.0, 0.0], [0.0, 0.0]])
    image_before, rationale_before = image.clone(), rationale.clone()

    scores = red_scores(image, rationale, lambdas)

    expected = image.clone()
    for n in range(3):
        for k in range(2):
            if lambdas[n, k] != 0:
                expected[n] += lambdas[n, k] * rationale[n, k]
    torch.testing.assert_close(scores, expected)
    assert torch.equal(scores[2], image[2])  # all lambdas 0: exactly the image branch
    assert torch.equal(image, image_before) and torch.equal(rationale, rationale_before)
    assert scores.data_ptr() != image.data_ptr()


def test_zero_lambda_ignores_minus_infinity_instead_of_making_nan():
    image = torch.tensor([[-1.0, -2.0, -3.0]])
    rationale = torch.tensor([[[float("-inf"), -0.1, -5.0]]])
    scores = red_scores(image, rationale, torch.tensor([[0.0]]))
    assert torch.equal(scores, image)
    assert not torch.isnan(scores).any()


def test_no_rationale_rows_return_a_copy_of_the_image_branch():
    image = torch.randn(2, 5)
    scores = red_scores(image, torch.empty(2, 0, 5), torch.empty(2, 0))
    assert torch.equal(scores, image) and scores.data_ptr() != image.data_ptr()


def test_red_is_a_product_of_experts():
    # p_hat ∝ p_img * p_r^lambda, normalised: check against probabilities computed directly.
    p_img = torch.tensor([0.5, 0.3, 0.2])
    p_r = torch.tensor([0.1, 0.1, 0.8])
    lam = 2.0
    scores = red_scores(p_img.log()[None], p_r.log()[None, None], torch.tensor([[lam]]))
    direct = p_img * p_r**lam
    torch.testing.assert_close(scores.softmax(-1)[0], direct / direct.sum())


@pytest.mark.parametrize(
    ("weight", "weights", "count", "expected"),
    [(0.5, None, 1, (0.5,)), (1.0, None, 4, (0.25,) * 4), (1.0, (3.0, 1.0), 2, (0.75, 0.25)), (0.0, (1, 1), 2, (0.0, 0.0))],
)
def test_lambdas_split_the_total_weight(weight, weights, count, expected):
    assert rationale_lambdas(weight, weights, count) == pytest.approx(expected)


@pytest.mark.parametrize("weights", [(1.0,), (1.0, 2.0, 3.0), (0.0, 0.0), (-1.0, 2.0), (math.nan, 1.0), ()])
def test_bad_rationale_weights_are_named(weights):
    with pytest.raises(ConfigError, match="rationale"):
        rationale_lambdas(0.5, weights, 2)


def test_top_k_and_top_p_filter_like_their_definitions():
    scores = torch.tensor([[4.0, 3.0, 2.0, 1.0, 0.0]])
    top2 = sampling_logits(scores, temperature=1.0, top_k=2, top_p=None)
    assert torch.isinf(top2[0, 2:]).all() and torch.isfinite(top2[0, :2]).all()
    probs = scores.softmax(-1)[0]  # about 0.64, 0.24, 0.09, ...
    nucleus = sampling_logits(scores, temperature=1.0, top_k=None, top_p=0.8)
    kept = torch.isfinite(nucleus[0]).nonzero().flatten().tolist()
    assert kept == [0, 1] and probs[0] < 0.8 <= probs[:2].sum()
    hot = sampling_logits(scores, temperature=2.0, top_k=None, top_p=None)
    torch.testing.assert_close(hot, scores / 2)

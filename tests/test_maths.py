"""The ELBO's maths: closed-form KL, likelihoods, the IWAE bound, the reparameterisation trick, beta."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.distributions import Normal
from torch.nn import functional as F

from conftest import tiny_config
from vae_core import VAE, losses

# -- closed-form Gaussian KL ---------------------------------------------------------------------


@pytest.mark.parametrize("mu, logvar", [
    ([0.0, 0.5, -1.2, 2.0], [0.0, -1.0, 0.3, 1.0]),
    ([0.3, 0.0, -0.7, 1.5], [-2.0, 1.5, 0.0, -0.5]),
])
def test_gaussian_kl_matches_monte_carlo(mu, logvar):
    """KL(q || p) = E_q[log q(z) - log p(z)], estimated from many draws, per dimension."""
    mu, logvar = torch.tensor(mu, dtype=torch.float64), torch.tensor(logvar, dtype=torch.float64)
    generator = torch.Generator().manual_seed(0)
    n = 400_000
    q, p = Normal(mu, torch.exp(0.5 * logvar)), Normal(torch.zeros_like(mu), torch.ones_like(mu))
    z = mu + torch.exp(0.5 * logvar) * torch.randn(n, len(mu), generator=generator, dtype=torch.float64)
    log_ratio = q.log_prob(z) - p.log_prob(z)
    estimate = log_ratio.mean(0)
    standard_error = log_ratio.std(0) / math.sqrt(n)
    closed = losses.gaussian_kl(mu, logvar)
    assert closed.shape == mu.shape
    # within 5 standard errors and a few percent: a wrong formula is off by far more
    assert torch.all((closed - estimate).abs() <= 5 * standard_error + 1e-4), (closed, estimate)
    assert torch.allclose(closed, estimate, rtol=0.03, atol=2e-3)


def test_gaussian_kl_matches_torch_distributions():
    generator = torch.Generator().manual_seed(1)
    mu = torch.randn(50, 6, generator=generator) * 2
    logvar = torch.randn(50, 6, generator=generator) * 1.5
    expected = torch.distributions.kl_divergence(Normal(mu, torch.exp(0.5 * logvar)), Normal(0.0, 1.0))
    assert torch.allclose(losses.gaussian_kl(mu, logvar), expected, rtol=1e-5, atol=1e-6)


def test_gaussian_kl_is_exactly_zero_at_the_prior():
    kl = losses.gaussian_kl(torch.zeros(5, 7), torch.zeros(5, 7))
    assert torch.equal(kl, torch.zeros(5, 7))


def test_gaussian_kl_is_positive_away_from_the_prior():
    # a shifted mean, a narrower and a wider posterior: each alone makes the KL positive
    mu = torch.tensor([0.1, 0.0, 0.0, -3.0])
    logvar = torch.tensor([0.0, -0.2, 0.2, 1.0])
    assert torch.all(losses.gaussian_kl(mu, logvar) > 0)


@settings(max_examples=200, deadline=None)
@given(st.floats(-30, 30, width=32), st.floats(-20, 20, width=32))
def test_gaussian_kl_never_negative(mu, logvar):
    """KL >= 0 for every (mu, logvar), even where float32 rounding is tight (logvar close to 0)."""
    kl = losses.gaussian_kl(torch.tensor([mu]), torch.tensor([logvar]))
    assert torch.isfinite(kl).all()
    assert kl.item() >= 0
    if mu == 0 and logvar == 0:
        assert kl.item() == 0


@pytest.mark.parametrize("logvar", [1e-8, -1e-8, 3e-5, -3e-5])
def test_gaussian_kl_is_accurate_for_tiny_logvar(logvar):
    """Near the prior KL ~ logvar^2 / 4; the naive exp(lv) - 1 - lv loses all of it to cancellation."""
    kl = losses.gaussian_kl(torch.zeros(1), torch.tensor([logvar])).item()
    assert kl >= 0
    assert kl == pytest.approx(logvar**2 / 4, rel=1e-2, abs=1e-15)


# -- likelihoods and densities -------------------------------------------------------------------


def test_bernoulli_log_likelihood_equals_manual_bce():
    generator = torch.Generator().manual_seed(2)
    logits = torch.randn(6, 1, 5, 4, generator=generator, dtype=torch.float64) * 3
    x = torch.rand(6, 1, 5, 4, generator=generator, dtype=torch.float64)  # grey levels too, not just 0/1
    p = torch.sigmoid(logits)
    manual = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).flatten(1).sum(1)
    got = losses.log_likelihood(x, logits, "bernoulli", obs_sigma=0.1)
    assert got.shape == (6,)
    assert torch.allclose(got, manual, rtol=1e-10, atol=1e-10)


def test_bernoulli_log_likelihood_is_stable_for_extreme_logits():
    logits = torch.tensor([[80.0, -80.0, 80.0, -80.0]])
    x = torch.tensor([[1.0, 0.0, 0.0, 1.0]])
    got = losses.log_likelihood(x, logits, "bernoulli", obs_sigma=0.1)
    assert torch.isfinite(got).all()
    assert got.item() == pytest.approx(-160.0, rel=1e-4)  # two confident mistakes of 80 nats each


@pytest.mark.parametrize("sigma", [0.05, 0.1, 1.0])
def test_gaussian_log_likelihood_equals_normal_log_prob(sigma):
    generator = torch.Generator().manual_seed(3)
    out = torch.randn(4, 3, 6, 6, generator=generator, dtype=torch.float64)
    x = torch.rand(4, 3, 6, 6, generator=generator, dtype=torch.float64)
    expected = Normal(torch.sigmoid(out), sigma).log_prob(x).flatten(1).sum(1)
    got = losses.log_likelihood(x, out, "gaussian", obs_sigma=sigma)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-8)


def test_gaussian_log_density_matches_torch_distributions():
    generator = torch.Generator().manual_seed(4)
    z, mu = torch.randn(2, 10, 5, generator=generator, dtype=torch.float64)
    logvar = torch.randn(10, 5, generator=generator, dtype=torch.float64)
    expected = Normal(mu, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    assert torch.allclose(losses.gaussian_log_density(z, mu, logvar), expected, atol=1e-10)
    assert torch.allclose(losses.standard_normal_log_density(z), Normal(0.0, 1.0).log_prob(z).sum(-1), atol=1e-10)


# -- ELBO <= IWAE <= log p(x) <= 0 ---------------------------------------------------------------


@pytest.fixture(scope="module")
def bounds():
    """ELBO and IWAE bounds of a model whose q(z|x) is far from its true posterior, on binary data.

    A steep decoder makes p(z|x) peaked and a widened encoder variance makes q too broad, so the
    bounds lie clearly apart. Each image is repeated to average out the sampling noise.
    """
    torch.manual_seed(0)
    model = VAE(tiny_config("mlp", latent_dim=2)).eval()
    with torch.no_grad():
        model.decoder_body[0][0].weight.mul_(6.0)
        model.to_logvar.bias.add_(1.0)
    x = (torch.rand(16, 1, 8, 8) < 0.3).float().repeat(16, 1, 1, 1)  # binary: log p(x) <= 0
    with torch.no_grad():
        result = {"elbo": model.loss(x)["elbo"].item()}
        result.update({k: model.iwae_bound(x, k=k) for k in (1, 10, 100)})
        result["elbo_big"] = model.loss(x.repeat(4, 1, 1, 1))["elbo"].item()
        result["iwae1_big"] = model.iwae_bound(x.repeat(4, 1, 1, 1), k=1)
    return result


def test_elbo_below_iwae_below_zero(bounds):
    iwae = bounds[100]
    assert iwae.shape == (256,)
    assert torch.all(iwae <= 0)
    assert bounds["elbo"] < iwae.mean().item() - 1.0  # the mismatch costs the ELBO nats IWAE recovers


def test_iwae_with_one_sample_is_the_elbo_in_expectation(bounds):
    iwae1, elbo = bounds["iwae1_big"], bounds["elbo_big"]
    standard_error = iwae1.std().item() / math.sqrt(len(iwae1))
    assert abs(iwae1.mean().item() - elbo) < 4 * math.sqrt(2) * standard_error
    assert standard_error < 0.5  # the check above is tight enough to mean something


def test_iwae_increases_with_k(bounds):
    means = [bounds[k].mean().item() for k in (1, 10, 100)]
    assert means[0] + 1.0 < means[1] < means[2] <= 0, means


# -- the reparameterisation trick ----------------------------------------------------------------


def test_reparameterize_gradients_match_analytic():
    """d/dmu E[z] = 1; d/dmu E[z^2] = 2 mu; d/dlogvar E[z^2] = exp(logvar) (E[z^2] = mu^2 + sigma^2)."""
    mu0, logvar0, n = torch.tensor([0.7, -1.5]), torch.tensor([-0.5, 0.8]), 200_000
    eps = torch.randn(n, 2, generator=torch.Generator().manual_seed(5))

    mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
    VAE.reparameterize(mu.expand(n, 2), logvar.expand(n, 2), eps).mean(0).sum().backward()
    assert torch.allclose(mu.grad, torch.ones(2), atol=1e-5)
    assert torch.allclose(logvar.grad, torch.zeros(2), atol=0.02)  # E[z] does not depend on the variance

    mu, logvar = mu0.clone().requires_grad_(), logvar0.clone().requires_grad_()
    VAE.reparameterize(mu.expand(n, 2), logvar.expand(n, 2), eps).pow(2).mean(0).sum().backward()
    assert torch.allclose(mu.grad, 2 * mu0, rtol=0.03, atol=0.02)
    assert torch.allclose(logvar.grad, torch.exp(logvar0), rtol=0.03)


def test_reparameterize_with_eps_is_deterministic_and_exact():
    mu, logvar = torch.tensor([[1.0, -2.0, 0.0]]), torch.tensor([[0.0, math.log(4.0), -math.log(9.0)]])
    eps = torch.tensor([[0.5, -1.0, 3.0]])
    first = VAE.reparameterize(mu, logvar, eps)
    assert torch.equal(first, VAE.reparameterize(mu, logvar, eps))
    assert torch.allclose(first, torch.tensor([[1.5, -4.0, 1.0]]))  # mu + sigma * eps, sigma = 1, 2, 1/3
    # without eps it samples: two calls differ
    assert not torch.equal(VAE.reparameterize(mu, logvar), VAE.reparameterize(mu, logvar))


# -- beta weighting ------------------------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.0, 0.5, 1.0, 4.0])
def test_loss_is_recon_plus_beta_kl(beta):
    torch.manual_seed(6)
    model = VAE(tiny_config("mlp", beta=beta)).eval()
    x = torch.rand(10, 1, 8, 8)
    eps = torch.randn(10, model.config.latent_dim)
    parts = model.loss(x, eps=eps)
    assert parts["kl"].item() > 0
    assert parts["loss"].item() == pytest.approx(parts["recon"].item() + beta * parts["kl"].item(), rel=1e-5)
    # the reported ELBO is the true one, whatever beta the loss trains with
    assert parts["elbo"].item() == pytest.approx(-(parts["recon"].item() + parts["kl"].item()), rel=1e-5)
    # the recon term is the decoder's log-likelihood at z = mu + sigma * eps
    mu, logvar = model.encode(x)
    out = model.decoder_output(VAE.reparameterize(mu, logvar, eps))
    assert parts["recon"].item() == pytest.approx(-losses.log_likelihood(x, out, "bernoulli", 0.1).mean().item(), rel=1e-5)
    assert torch.allclose(parts["kl_per_dim"].sum(), parts["kl"], rtol=1e-5)


def test_beta_argument_overrides_config():
    torch.manual_seed(7)
    model = VAE(tiny_config("conv", beta=1.0)).eval()
    x, eps = torch.rand(6, 1, 8, 8), torch.randn(6, 3)
    base = model.loss(x, eps=eps)
    heavy = model.loss(x, eps=eps, beta=10.0)
    assert heavy["loss"].item() == pytest.approx(base["recon"].item() + 10.0 * base["kl"].item(), rel=1e-5)
    assert heavy["elbo"].item() == pytest.approx(base["elbo"].item(), rel=1e-6)


def test_gaussian_likelihood_model_loss_uses_obs_sigma():
    torch.manual_seed(8)
    x = torch.rand(5, 1, 8, 8)
    eps = torch.randn(5, 3)
    recons = {}
    for sigma in (0.1, 0.5):
        torch.manual_seed(8)
        model = VAE(tiny_config("mlp", likelihood="gaussian", obs_sigma=sigma)).eval()
        out, mu, logvar = model(x, eps=eps)
        expected = -Normal(torch.sigmoid(out), sigma).log_prob(x).flatten(1).sum(1).mean()
        recons[sigma] = model.loss(x, eps=eps)["recon"]
        assert torch.allclose(recons[sigma], expected, rtol=1e-5)
    assert not torch.allclose(recons[0.1], recons[0.5])


def test_bce_helper_agrees_with_binary_cross_entropy():
    """The per-sample Bernoulli term sums torch's BCE over pixels (a second, independent reference)."""
    logits = torch.randn(3, 1, 4, 4, generator=torch.Generator().manual_seed(9))
    x = (torch.rand(3, 1, 4, 4, generator=torch.Generator().manual_seed(10)) > 0.5).float()
    expected = -F.binary_cross_entropy(torch.sigmoid(logits), x, reduction="none").flatten(1).sum(1)
    assert torch.allclose(losses.log_likelihood(x, logits, "bernoulli", 0.1), expected, atol=1e-4)


# -- beta-TCVAE: the total-correlation estimator ----------------------------------------------------


def _gaussian_aggregate(rho: float, n: int, h: float, seed: int):
    """Posteriors N(mu_j, h^2 I) with means drawn from N(0, [[1, rho], [rho, 1]]): the aggregate
    posterior is N(0, Sigma + h^2 I), whose total correlation is known in closed form."""
    generator = torch.Generator().manual_seed(seed)
    cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
    mu = torch.randn(n, 2, generator=generator, dtype=torch.float64) @ torch.linalg.cholesky(cov).T
    logvar = torch.full_like(mu, 2 * math.log(h))
    z = mu + h * torch.randn(n, 2, generator=generator, dtype=torch.float64)
    smoothed = cov + h * h * torch.eye(2, dtype=torch.float64)
    exact = 0.5 * (torch.log(torch.diag(smoothed)).sum() - torch.logdet(smoothed)).item()
    return z, mu, logvar, exact


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8, 0.95])
def test_total_correlation_matches_a_correlated_gaussian(rho):
    """TC of a bivariate Gaussian with correlation rho is -0.5 log(1 - rho^2): 0 when independent."""
    n = 3000
    z, mu, logvar, exact = _gaussian_aggregate(rho, n, h=0.1, seed=11)
    estimate = losses.total_correlation(z, mu, logvar, n, estimator="mss").item()
    assert estimate == pytest.approx(exact, abs=0.06)
    if rho == 0.0:
        assert abs(estimate) < 0.06
    if rho == 0.95:
        assert estimate > 1.0


def test_minibatch_weighted_sampling_is_offset_by_d_minus_1_log_n_on_the_whole_set():
    """With the batch = the whole set, MWS weighs every pair 1/N^2 where the exact kernel estimate
    weighs 1/N: the joint term loses log N once, the D marginals D times."""
    n = 1000
    z, mu, logvar, _ = _gaussian_aggregate(0.5, n, h=0.2, seed=12)
    mws = losses.total_correlation(z, mu, logvar, n, estimator="mws")
    mss = losses.total_correlation(z, mu, logvar, n, estimator="mss")
    assert (mws - mss).item() == pytest.approx((2 - 1) * math.log(n), abs=1e-9)


def test_total_correlation_on_minibatches_ranks_correlation():
    """Small batches from a large set are biased, but more dependence still reads as more TC."""
    n, m = 20000, 256
    estimates = []
    for rho in (0.0, 0.9):
        z, mu, logvar, _ = _gaussian_aggregate(rho, n, h=0.1, seed=13)
        estimates.append(sum(losses.total_correlation(z[i:i + m], mu[i:i + m], logvar[i:i + m], n).item()
                             for i in range(0, 10 * m, m)) / 10)
    assert estimates[1] > estimates[0] + 0.3


def test_beta_tcvae_loss_is_elbo_plus_beta_minus_one_tc():
    torch.manual_seed(14)
    model = VAE(tiny_config("conv", beta=6.0, objective="beta-tcvae")).eval()
    x, eps = torch.rand(32, 1, 8, 8), torch.randn(32, 3)
    parts = model.loss(x, eps=eps, dataset_size=5000)
    mu, logvar = model.encode(x)
    tc = losses.total_correlation(VAE.reparameterize(mu, logvar, eps), mu, logvar, 5000)
    assert parts["tc"].item() == pytest.approx(tc.item(), rel=1e-5)
    assert parts["loss"].item() == pytest.approx(-parts["elbo"].item() + 5.0 * tc.item(), rel=1e-5)
    warm = model.loss_terms(x, *model(x, eps=eps), eps=eps, dataset_size=5000, kl_weight=0.5)
    assert warm["loss"].item() == pytest.approx(warm["recon"].item() + 0.5 * (warm["kl"].item() + 5.0 * tc.item()),
                                                rel=1e-5)
    # beta = 1 is the plain VAE: TC then carries no extra weight
    plain = VAE(tiny_config("conv", beta=1.0, objective="beta-tcvae")).eval()
    one = plain.loss(x, eps=eps, dataset_size=5000)
    assert one["loss"].item() == pytest.approx(-one["elbo"].item(), rel=1e-5)


def test_unknown_objective_and_estimator_are_refused():
    with pytest.raises(ValueError, match="objective"):
        tiny_config("mlp", objective="wae")
    z = torch.zeros(4, 2)
    with pytest.raises(ValueError, match="estimator"):
        losses.total_correlation(z, z, z, 10, estimator="kde")

# %% [markdown]
# # Bayesian regression with Pyro, checked against the exact answer
# A linear model on scikit-learn's diabetes study (442 patients). With a Normal prior and a known noise level the
# posterior has a closed form, so we can see how close stochastic variational inference (SVI) gets.
# (This file is `pyro_demo.py`, not `pyro.py`: a script named pyro.py would shadow the library.)
# `TOUR_QUICK=1` for fewer SVI steps, `TOUR_OUT` for the output folder.

# %%
# Start-up first, before torch starts: on a busy machine, the idle cores' threads, which sleep while they wait
# (the `tour` command does this itself; a notebook or script calls it; see tour/core/startup.py).
from tour.core import startup

startup.start_up()

from tour import pyro as stop

cfg = startup.example_config(stop.Config)  # quick with TOUR_QUICK=1; writes to $TOUR_OUT (tour-output)
print(f"{cfg.steps} SVI steps x {cfg.particles} particles, predictors {cfg.features}")

# %% [markdown]
# ## 1) The data and the exact posterior
# Standardised predictors, so the intercept drops out. Prior times likelihood is Normal: its mean and covariance,
# and the log evidence log p(y) that no ELBO can exceed, are a few lines of linear algebra.

# %%
x, y = stop.diabetes(cfg.features)
sigma = stop.noise_std(x, y)  # the least-squares residual, plugged in as the known noise
mean, cov, precision, log_evidence = stop.posterior(x, y, sigma, cfg.prior_scale)
print(f"{len(y)} patients; noise std {sigma:.3f}")
print(f"exact posterior mean {stop.fmt(mean)}, std {stop.fmt(cov.diagonal().sqrt())}; log p(y) = {log_evidence:.2f}")

# %% [markdown]
# ## 2) The same model in Pyro, fitted by SVI
# `make_model` is ordinary Python with `pyro.sample` statements. An autoguide (a full-covariance Gaussian) is fitted
# by maximising the ELBO; it should land on the exact posterior.

# %%
from pyro.infer.autoguide import AutoMultivariateNormal

model = stop.make_model(sigma, cfg.prior_scale)
guide, elbo = stop.fit(cfg, model, AutoMultivariateNormal, x.float(), y.float())
svi_mean, svi_std = stop.guide_moments(guide)
print(f"SVI mean {stop.fmt(svi_mean)}: within {stop.rel_error(svi_mean, mean):.2%} of exact")
print(f"final ELBO {stop.tail_mean(elbo):.2f} <= log p(y) {log_evidence:.2f}")

# %% [markdown]
# ## 3) What a mean-field guide gets wrong
# `AutoDiagonalNormal` treats the weights as independent. The predictors are correlated, so it must understate the
# spread; the best such fit has a closed form too.

# %%
theory_std, gap = stop.meanfield_theory(precision)
print(f"best independent-Normal std {stop.fmt(theory_std)} vs true {stop.fmt(cov.diagonal().sqrt())}")
print(f"its ELBO sits {gap:.3f} nats below log p(y), whatever the optimiser does")

# %% [markdown]
# ## The whole stop
# `run(cfg)` fits both guides on the same seed and schedule and draws the ELBO curves and the posterior densities;
# in a notebook the Result below shows them inline.

# %%
result = stop.run(cfg)
print(f"pyro: SVI mean within {result.mean_rel_error:.2%}, std within {result.std_rel_error:.2%} "
      "of the exact posterior")
result

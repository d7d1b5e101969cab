"""Pyro: Bayesian linear regression on real data (scikit-learn's diabetes study), fitted by stochastic
variational inference with an autoguide and checked against the posterior worked out in closed form.

Run: `tour run pyro` (or `python -m tour.pyro`, `python examples/pyro_demo.py`); `--quick` for fewer SVI steps.
Needs the extra: `pip install 'torch-tour[pyro]'`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from tour.core.cli import stop_main
from tour.core.config import BaseConfig, arg, out_dir
from tour.core.errors import TourError, require
from tour.core.plots import write_png
from tour.core.results import BaseResult, check, labelled
from tour.core.state import keeps_caller_state

NAME = "pyro"
FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")  # load_diabetes' column names
# SVI vs the closed form at the tour's settings (quick: 300 steps measured ~1 % on the mean): room for other CPUs
MEAN_TOL, STD_TOL = 0.03, 0.05  # relative error of the posterior mean and std, worst weight
ELBO_TOL = 0.05  # |final ELBO - log p(y)| in nats: the full-covariance guide can reach the evidence
GAP_TOL = 0.1  # the mean-field ELBO's distance below log p(y) vs the closed-form KL, nats
SVI_SETTINGS = ("features", "prior_scale", "steps", "particles", "lr")  # what the tolerances were measured with


@dataclass
class Config(BaseConfig):
    features: list[str] = arg(["bmi", "bp", "s5"], "diabetes columns used as predictors", choices=FEATURES)
    prior_scale: float = arg(1.0, "prior std of each weight: w ~ Normal(0, prior_scale)", gt=0)
    steps: int = arg(1000, "SVI steps per guide", min=1, quick=300)
    particles: int = arg(64, "samples per ELBO estimate, drawn in one vectorised batch", min=1)
    lr: float = arg(0.05, "Adam learning rate at the start; it decays 100x over the run", gt=0)

    def validate(self) -> None:
        if not self.features or len(set(self.features)) != len(self.features):
            raise TourError(f"--features must be distinct names from: {' '.join(FEATURES)} (got {self.features})")


@dataclass
class Result(BaseResult):
    device: str
    n: int = labelled("patients")
    features: list[str]
    noise_std: float  # the likelihood's sigma, treated as known (so the posterior is Gaussian in closed form)
    steps: int
    analytic_mean: list[float] = field(default_factory=list)
    analytic_std: list[float] = field(default_factory=list)
    svi_mean: list[float] = field(default_factory=list)  # AutoMultivariateNormal guide
    svi_std: list[float] = field(default_factory=list)
    # max |svi - analytic| / |analytic| over the weights
    mean_rel_error: float = labelled("posterior means: SVI vs closed form, max relative error", "%", 0.0)
    # max |svi - analytic| / analytic over the weights
    std_rel_error: float = labelled("posterior std: SVI vs closed form, max relative error", "%", 0.0)
    meanfield_std: list[float] = field(default_factory=list)  # AutoDiagonalNormal guide (independent weights)
    meanfield_theory_std: list[float] = field(default_factory=list)  # its known optimum: 1/sqrt(diag(precision))
    meanfield_std_rel_error: float = 0.0  # AutoDiagonalNormal vs that optimum
    # log p(y), closed form: the ELBO's ceiling
    log_evidence: float = labelled("log evidence, closed form (the ELBO's ceiling)", "nats", 0.0)
    # AutoMultivariateNormal, mean of the last 10% of steps
    final_elbo: float = labelled("ELBO, AutoMultivariateNormal", "nats", 0.0)
    final_elbo_meanfield: float = labelled("ELBO, AutoDiagonalNormal", "nats", 0.0)
    meanfield_theory_gap: float = 0.0  # log p(y) - best mean-field ELBO, closed form: what ignoring correlation costs
    elbo: list[float] = field(default_factory=list)  # per step, AutoMultivariateNormal
    svi_seconds: float = labelled("SVI time", "s", 0.0)
    plots: list[str] = field(default_factory=list)
    posterior_mean: bool | None = check(f"SVI's posterior mean within {MEAN_TOL:.0%} of the closed form (not run on "
                                        "SVI settings of your own)", None)
    posterior_std: bool | None = check(f"SVI's posterior std within {STD_TOL:.0%} of the closed form", None)
    elbo_at_evidence: bool | None = check(f"the full-covariance guide's ELBO within {ELBO_TOL:g} nats of log p(y)",
                                          None)
    meanfield_as_theory: bool | None = check(f"AutoDiagonalNormal's std within {STD_TOL:.0%} of 1/sqrt(diag(P)), "
                                             f"its ELBO gap within {GAP_TOL:g} nats of the closed-form KL", None)


# 1) data: real, standardised ----------------------------------------------------------------------------------
def diabetes(features: list[str]):
    """442 patients: standardised predictors X and disease progression y. Centring both makes the intercept's
    posterior independent of the slopes and centred at 0, so the model leaves it out."""
    import torch
    from sklearn.datasets import load_diabetes

    data = load_diabetes()
    x = data.data[:, [FEATURES.index(f) for f in features]]
    x = (x - x.mean(0)) / x.std(0)
    y = (data.target - data.target.mean()) / data.target.std()
    return torch.tensor(x), torch.tensor(y)  # float64: the closed form is the reference, keep it exact


def noise_std(x, y) -> float:
    """The residual std of least squares, plugged in as the 'known' noise: a fixed sigma keeps it conjugate."""
    import torch

    w = torch.linalg.lstsq(x, y.unsqueeze(-1)).solution.squeeze(-1)
    return ((y - x @ w).pow(2).sum() / (len(y) - x.shape[1])).sqrt().item()


# 2) the closed form -------------------------------------------------------------------------------------------
def posterior(x, y, sigma: float, tau: float):
    """Normal prior N(0, tau^2 I) times a Normal likelihood is Normal: precision = X'X/sigma^2 + I/tau^2,
    mean = cov X'y / sigma^2. Also log p(y) = log N(y; 0, sigma^2 I + tau^2 XX'), which bounds every ELBO."""
    import torch

    precision = x.T @ x / sigma**2 + torch.eye(x.shape[1], dtype=x.dtype) / tau**2
    cov = torch.linalg.inv(precision)
    mean = cov @ x.T @ y / sigma**2
    marginal = torch.distributions.MultivariateNormal(
        torch.zeros_like(y), sigma**2 * torch.eye(len(y), dtype=y.dtype) + tau**2 * x @ x.T)
    return mean, cov, precision, marginal.log_prob(y).item()


# 3) the same model in Pyro, fitted by SVI ---------------------------------------------------------------------
def make_model(sigma: float, tau: float):
    import pyro
    import pyro.distributions as dist
    import torch

    def model(x, y=None):
        zeros = torch.zeros(x.shape[1], dtype=x.dtype, device=x.device)  # the guide follows the prior's device
        w = pyro.sample("w", dist.Normal(zeros, tau).to_event(1))  # one vector-valued latent
        with pyro.plate("patients", len(x)):  # observations are independent given w
            # (x * w).sum(-1) rather than x @ w: it broadcasts over the batch of particles SVI draws at once
            pyro.sample("y", dist.Normal((x * w).sum(-1), sigma), obs=y)

    return model


def fit(cfg: Config, model, guide_cls, x, y):
    import pyro
    from pyro.infer import SVI, Trace_ELBO
    from pyro.optim import ClippedAdam

    from tour.core.device import one_thread

    pyro.clear_param_store()  # parameters live in a global store: start each guide from nothing
    pyro.set_rng_seed(cfg.seed)
    guide = guide_cls(model, init_scale=0.05)
    optim = ClippedAdam({"lr": cfg.lr, "lrd": 0.01 ** (1 / cfg.steps)})  # big steps first, fine ones at the end
    elbo = Trace_ELBO(num_particles=cfg.particles, vectorize_particles=True, max_plate_nesting=1)
    svi = SVI(model, guide, optim, elbo)
    with one_thread():  # a 442 x 3 problem: its cost is Python per step, not maths to split between threads
        losses = [svi.step(x, y) for _ in range(cfg.steps)]  # each step returns the -ELBO estimate it descended
    return guide, [-v for v in losses]


def guide_moments(guide):
    """Mean and std of the fitted guide: both autoguides expose their Gaussian over the latent vector."""
    q = guide.get_posterior()
    std = q.covariance_matrix.diagonal().sqrt() if hasattr(q, "covariance_matrix") else q.stddev
    return q.mean.detach().cpu().double(), std.detach().cpu().double()


def rel_error(a, b) -> float:
    return ((a - b).abs() / b.abs()).max().item()


def svi_both(cfg: Config, model, x, y, device):
    """Fit the full-covariance guide and the mean-field one on the same model, data, seed and schedule."""
    from pyro.infer.autoguide import AutoDiagonalNormal, AutoMultivariateNormal

    x32, y32 = x.float().to(device), y.float().to(device)  # Pyro runs in float32, the default a user gets
    start = time.perf_counter()
    guides = (AutoMultivariateNormal, AutoDiagonalNormal)
    fits = {cls.__name__: fit(cfg, model, cls, x32, y32) for cls in guides}
    return fits, time.perf_counter() - start


def tail_mean(values: list[float]) -> float:
    tail = max(1, len(values) // 10)  # ELBO estimates are noisy: average the last tenth
    return sum(values[-tail:]) / tail


# 4) the mean-field guide --------------------------------------------------------------------------------------
def meanfield_theory(precision):
    """The best independent-Normal fit to a Gaussian posterior has std 1/sqrt(diag(P)) and sits below log p(y) by
    KL = 0.5 (sum log diag(P) - log det P): what ignoring the correlations costs."""
    import torch

    return precision.diagonal().rsqrt(), 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision)).item()


# 5) plots -----------------------------------------------------------------------------------------------------
def plot_elbo(path, curves: dict, log_evidence: float, meanfield_gap: float):
    import numpy as np
    from matplotlib.figure import Figure  # a Figure on its own renders with Agg: no pyplot, no display

    fig = Figure(figsize=(11, 4))
    left, right = fig.subplots(1, 2)
    for label, values in curves.items():
        left.plot(values, lw=0.8, label=label)
        smooth = np.convolve(log_evidence - np.asarray(values), np.ones(10) / 10, mode="valid")
        right.plot(np.clip(smooth, 1e-4, None), lw=0.8, label=label)  # estimates can overshoot a tiny gap
    left.axhline(log_evidence, color="k", ls="--", label=f"log p(y) = {log_evidence:.1f} (closed form)")
    left.set_ylim(log_evidence - 40, log_evidence + 5)  # the first steps are far below; show the approach
    left.set(xlabel="SVI step", ylabel="ELBO (nats)", title="ELBO rises to the log evidence it can't exceed")
    left.legend(loc="lower right")
    right.axhline(meanfield_gap, color="C1", ls="--", label=f"mean-field optimum {meanfield_gap:.3f} (closed form)")
    right.set_yscale("log")
    right.set(xlabel="SVI step", ylabel="log p(y) - ELBO = KL(q || posterior)", title="the gap, 10-step mean")
    right.legend(loc="upper right")
    return write_png(fig, path, dpi=110, bbox_inches="tight")


def plot_densities(path, features, mean, cov, svi, meanfield, samples):
    import torch
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4 * len(features), 3.6))
    axes = fig.subplots(1, len(features), squeeze=False)[0]
    std = cov.diagonal().sqrt()
    for i, (ax, name) in enumerate(zip(axes, features)):
        grid = torch.linspace(mean[i] - 5 * std[i], mean[i] + 5 * std[i], 300, dtype=mean.dtype)
        pdf = lambda m, s: torch.distributions.Normal(m, s).log_prob(grid).exp()  # noqa: E731
        ax.hist(samples[:, i].numpy(), bins=50, density=True, alpha=0.3, label="AutoMultivariateNormal samples")
        ax.plot(grid, pdf(mean[i], std[i]), "k", lw=2, label="analytic posterior")
        ax.plot(grid, pdf(svi[0][i], svi[1][i]), "C1--", label="AutoMultivariateNormal")
        ax.plot(grid, pdf(meanfield[0][i], meanfield[1][i]), "C2:", label="AutoDiagonalNormal (mean-field)")
        ax.set(title=f"weight of {name}", xlabel="w")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=4, bbox_to_anchor=(0.5, -0.1))
    return write_png(fig, path, dpi=110, bbox_inches="tight")


@keeps_caller_state
def run(cfg: Config) -> Result:
    require("pyro", stop="the pyro stop")
    from tour.core import device as dev

    device = dev.get_device(cfg.device)  # a model this small is launch-bound on a GPU, but --device is honoured
    folder = out_dir(cfg, NAME)
    print(f"[pyro] {dev.describe(cfg.device)}")
    print("1) data: scikit-learn's diabetes study, standardised; y = disease progression a year on")
    x, y = diabetes(cfg.features)
    sigma = noise_std(x, y)
    print(f"  {len(y)} patients, predictors {cfg.features}; noise std (least-squares residual) {sigma:.4f}")
    print(f"2) closed form: prior w ~ N(0, {cfg.prior_scale:g}^2 I), y ~ N(Xw, {sigma:.3f}^2)")
    mean, cov, precision, log_evidence = posterior(x, y, sigma, cfg.prior_scale)
    std = cov.diagonal().sqrt()
    print(f"  posterior mean {fmt(mean)}, std {fmt(std)}; log evidence log p(y) = {log_evidence:.2f}")
    print(f"3) SVI, {cfg.steps} steps x {cfg.particles} particles, ClippedAdam lr {cfg.lr:g} decaying 100x")
    fits, seconds = svi_both(cfg, make_model(sigma, cfg.prior_scale), x, y, device)
    (mvn, elbo), (mf, elbo_mf) = fits.values()
    svi_mean, svi_std = guide_moments(mvn)
    mf_std = guide_moments(mf)[1]
    final, final_mf = tail_mean(elbo), tail_mean(elbo_mf)
    mean_err, std_err = rel_error(svi_mean, mean), rel_error(svi_std, std)
    print(f"  AutoMultivariateNormal: mean {fmt(svi_mean)}, std {fmt(svi_std)}")
    print(f"  vs analytic: mean within {mean_err:.2%}, std within {std_err:.2%}; final ELBO {final:.2f} "
          f"vs log p(y) {log_evidence:.2f} ({seconds:.1f} s for both guides)")
    theory_mf, mf_gap = meanfield_theory(precision)
    mf_err = rel_error(mf_std, theory_mf)
    print(f"4) AutoDiagonalNormal treats weights as independent: std {fmt(mf_std)}, {1 - (mf_std / std).mean():.0%} "
          f"below the true std (the predictors are correlated);\n  theory says {fmt(theory_mf)} (within "
          f"{mf_err:.2%}); its ELBO is {log_evidence - final_mf:.3f} below log p(y), theory says {mf_gap:.3f}")
    plots = [plot_elbo(folder / "elbo.png", {k: v[1] for k, v in fits.items()}, log_evidence, mf_gap),
             plot_densities(folder / "posterior.png", cfg.features, mean, cov, (svi_mean, svi_std),
                            guide_moments(mf), mvn.get_posterior().sample((4000,)).cpu())]
    print(f"5) plots: {', '.join(plots)}")
    return Result(device=str(device), n=len(y), features=list(cfg.features), noise_std=sigma, steps=cfg.steps,
                  analytic_mean=mean.tolist(), analytic_std=std.tolist(), svi_mean=svi_mean.tolist(),
                  svi_std=svi_std.tolist(), mean_rel_error=mean_err, std_rel_error=std_err,
                  meanfield_std=mf_std.tolist(), meanfield_theory_std=theory_mf.tolist(),
                  meanfield_std_rel_error=mf_err, log_evidence=log_evidence, final_elbo=final,
                  final_elbo_meanfield=final_mf, meanfield_theory_gap=mf_gap, elbo=elbo, svi_seconds=seconds,
                  plots=plots, **verdicts(cfg, mean_err, std_err, final - log_evidence, mf_err,
                                          log_evidence - final_mf - mf_gap))


def verdicts(cfg: Config, mean_err: float, std_err: float, elbo_gap: float, mf_err: float, mf_gap_err: float) -> dict:
    """The Result's checks; None when the SVI settings are the user's (few steps need not converge)."""
    found = {"posterior_mean": mean_err < MEAN_TOL, "posterior_std": std_err < STD_TOL,
             "elbo_at_evidence": abs(elbo_gap) < ELBO_TOL,
             "meanfield_as_theory": mf_err < STD_TOL and abs(mf_gap_err) < GAP_TOL}
    return found if cfg.stock(*SVI_SETTINGS) else dict.fromkeys(found)


def fmt(t) -> str:
    return "[" + ", ".join(f"{v:.4f}" for v in t.tolist()) + "]"


def main(argv: list[str] | None = None) -> int:
    return stop_main(NAME, Config, run, argv, __doc__)


if __name__ == "__main__":
    raise SystemExit(main())

"""Preference and SFT losses as pure functions of per-sequence log-prob statistics.

Inputs are per-pair tensors of shape [B]:
  pol_*_sum / ref_*_sum : summed token log-probs of the response under the policy / reference
  *_len                 : number of response tokens (prompt masked, EOS and the template's end
                          tokens counted, as TRL tokenises a conversational completion)
Every function returns (per-pair loss [B], chosen reward [B], rejected reward [B]).

dpo_norm (the paper's, TRL `sigmoid_norm`):  s(y) = sum/len,
    z = [s_pol(c) - s_pol(r)] - [s_ref(c) - s_ref(r)],   loss = -log sigmoid(beta z),
    reward = beta (s_pol - s_ref)
dpo (TRL `sigmoid`): the same with summed log-probs; label_smoothing as in cDPO.
ipo (TRL `ipo`, length-normalised as TRL does): loss = (z_norm - 1/(2 beta))^2
simpo (TRL CPO `simpo`, cpo_alpha=0): loss = -log sigmoid(beta (s_pol(c) - s_pol(r)) - gamma),
    reward = beta s_pol (no reference model)
"""

from __future__ import annotations

import torch.nn.functional as F

from .methods import METHODS, MethodName  # noqa: F401  (re-exported: the registry lives torch-free)


NEEDS_REFERENCE = {name: m.reference for name, m in METHODS.items()}


def pair_losses(method: str, pol_c, pol_r, c_len, r_len, ref_c, ref_r, *, beta: float, label_smoothing: float = 0.0,
                gamma: float = 0.5, nll_coef: float = 0.0):
    """Per-pair loss and rewards of a preference method, plus `nll_coef` x the chosen answer's
    per-token NLL (RPO-style; 0 in the paper's configs)."""
    if method == "dpo_norm":
        loss, rc, rr = dpo_norm_loss(pol_c, pol_r, ref_c, ref_r, c_len, r_len, beta)
    elif method == "dpo":
        loss, rc, rr = dpo_loss(pol_c, pol_r, ref_c, ref_r, beta, label_smoothing)
    elif method == "ipo":
        loss, rc, rr = ipo_loss(pol_c, pol_r, ref_c, ref_r, c_len, r_len, beta)
    elif method == "simpo":
        loss, rc, rr = simpo_loss(pol_c, pol_r, c_len, r_len, beta, gamma)
    else:
        raise ValueError(f"{method} is not a preference method")
    if nll_coef:
        loss = loss + nll_coef * nll_per_token(pol_c, c_len)
    return loss, rc, rr


def dpo_norm_loss(pol_c_sum, pol_r_sum, ref_c_sum, ref_r_sum, c_len, r_len, beta: float):
    pol_c, pol_r = pol_c_sum / c_len, pol_r_sum / r_len
    ref_c, ref_r = ref_c_sum / c_len, ref_r_sum / r_len
    z = (pol_c - pol_r) - (ref_c - ref_r)
    return -F.logsigmoid(beta * z), beta * (pol_c - ref_c).detach(), beta * (pol_r - ref_r).detach()


def dpo_loss(pol_c_sum, pol_r_sum, ref_c_sum, ref_r_sum, beta: float, label_smoothing: float = 0.0):
    z = (pol_c_sum - pol_r_sum) - (ref_c_sum - ref_r_sum)
    loss = -F.logsigmoid(beta * z) * (1 - label_smoothing) - F.logsigmoid(-beta * z) * label_smoothing
    return loss, beta * (pol_c_sum - ref_c_sum).detach(), beta * (pol_r_sum - ref_r_sum).detach()


def ipo_loss(pol_c_sum, pol_r_sum, ref_c_sum, ref_r_sum, c_len, r_len, beta: float):
    z = (pol_c_sum - ref_c_sum) / c_len - (pol_r_sum - ref_r_sum) / r_len
    return (z - 1 / (2 * beta)) ** 2, beta * (pol_c_sum - ref_c_sum).detach(), beta * (pol_r_sum - ref_r_sum).detach()


def simpo_loss(pol_c_sum, pol_r_sum, c_len, r_len, beta: float, gamma: float):
    s_c, s_r = pol_c_sum / c_len, pol_r_sum / r_len
    return -F.logsigmoid(beta * (s_c - s_r) - gamma), beta * s_c.detach(), beta * s_r.detach()


def nll_per_token(pol_c_sum, c_len):
    """Mean negative log-likelihood per chosen token, per pair (the optional NLL term)."""
    return -pol_c_sum / c_len

"""Independent oracle for Guardrail's mixture SPRT (sidecar/src/judgement/sequential.rs).

Reads {"breach": [[ratio, weight]...], "healthy": [...], "cases": [...]} on stdin and
answers, with scipy's binomial log-pmf (not our closed form), for each case:
  - log_mixture: ln sum_i w_i * Binom(k; n, p_i) / Binom(k; n, p0)
  - first_breach_k: the smallest k in 0..n whose breach-side mixture reaches 1/alpha
  - lower_bound: the rate q where the breach-side mixture against null q crosses 1/alpha
"""
import json
import math
import sys

from scipy.optimize import brentq
from scipy.special import logsumexp
from scipy.stats import binom


def alternatives(p0, table, up):
    odds = p0 / (1 - p0)
    out = []
    for ratio, weight in table:
        o = odds * ratio if up else odds / ratio
        out.append((o / (1 + o), weight))
    return out


def log_mixture(n, k, p0, table, up):
    terms = [math.log(w) + binom.logpmf(k, n, p) - binom.logpmf(k, n, p0)
             for p, w in alternatives(p0, table, up)]
    return float(logsumexp(terms))


def main():
    spec = json.load(sys.stdin)
    out = []
    for c in spec["cases"]:
        up = c["side"] == "above"
        table = spec["breach"] if up else spec["healthy"]
        n, k, p0, alpha = c["n"], c["k"], c["p0"], c["alpha"]
        threshold = -math.log(alpha)
        first = next((j for j in range(n + 1)
                      if log_mixture(n, j, p0, spec["breach"], True) >= threshold), None)
        lower = None
        if up and k > 0:
            f = lambda q: log_mixture(n, k, q, spec["breach"], True) - threshold
            lo, hi = 1e-9, k / n
            if f(lo) > 0 and f(hi) < 0:
                lower = brentq(f, lo, hi, xtol=1e-14, rtol=1e-12)
        out.append({"log_mixture": log_mixture(n, k, p0, table, up),
                    "first_breach_k": first, "lower_bound": lower})
    json.dump(out, sys.stdout)


main()

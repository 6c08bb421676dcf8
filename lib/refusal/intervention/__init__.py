"""Intervention: removing or adding a direction, choosing which one, and baking the removal into the weights.

Modules: ``ablation`` (runtime hooks: ``r <- r - alpha Q Q^T r`` at every read of the residual stream, and
activation addition), ``scoring`` (first-token refusal scores and KL, one forward pass per batch), ``inputs``
(the samples stage 04 works on), ``selection`` (bypass / induce / KL, Arditi et al.), ``rank`` (the compliance
vs rank sweep and the verdict) and ``orthogonalize`` (the exact weight edit, checked and saved).
"""

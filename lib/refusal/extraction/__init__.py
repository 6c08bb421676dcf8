"""Extraction: residual-stream activations, candidate refusal directions, and how well they separate.

Modules: ``activations`` (streaming collection at chosen layers, hook points and template positions; outlier
coordinates), ``directions`` (difference of means per layer and position, bases, the selected direction that
stage 04 hands to stage 05) and ``separability`` (Cohen's d in sample and held out, cross-layer structure).
"""

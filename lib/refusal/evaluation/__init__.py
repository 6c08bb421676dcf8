"""Evaluation: judging completions, measuring capability, and redacting what is published.

Modules: ``judge`` (compliance and coherence by an LLM judge over an OpenAI-compatible API, or offline; the
project's one refusal detector), ``capability`` (lm-eval-harness tasks, KL and cross-entropy on harmless text)
and ``redact`` (the one redaction rule for published excerpts).
"""

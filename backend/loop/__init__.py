"""The Align-SLM loop, one module per step, in order:

1. `generate`   sample continuations of prompts with a model version, vocode them
2. `transcribe` ASR of the continuations (and prompts)
3. `judge`      AI judges score each continuation given the prompt
4. `pairs`      preference pairs from stored AI and human judgments
5. `train`      DPO with a LoRA adapter on a round's pairs -> a new model version
6. `evaluate`   benchmarks and judge score of a version
and `rounds`, which runs 1-6 for K rounds as one job (curriculum thresholds between rounds).

Nothing is imported here: importing the package loads no model code.
"""

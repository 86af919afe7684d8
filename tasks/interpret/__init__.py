"""Interpretation: which bases drive a language model's likelihood or a classifier's output.

* :mod:`.ism` -- zero-shot saturation mutagenesis with a causal language model (the LLR of
  every substitution, reusing the unchanged prefix) and nucleotide dependency maps;
* :mod:`.attribution` -- classifier attributions: ISM through the head and gradient
  attributions (Captum) against stated baselines;
* :mod:`.motifs` -- recurring patterns in attributions (TF-MoDISco) matched to known motifs
  (TOMTOM).

Their figures (logos, heatmaps) are made by :mod:`genoseq.figures`, and motif files are read and
written by :mod:`genoseq.motif_files`.
"""

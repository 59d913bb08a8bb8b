"""Scoring a trained run: accuracy, SQuAD v1.1 / v2.0 EM and F1, worst case over adversarial variants
(`scoring`, `squad_metric`)."""

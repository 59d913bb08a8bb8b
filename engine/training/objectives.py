"""Training objectives: a named loss computed per example from the task adapter's logits (the loss seam).

Only the names live here for now; the objectives themselves follow (see the loss-seam work).
"""

from __future__ import annotations

OBJECTIVES = ("cross_entropy",)

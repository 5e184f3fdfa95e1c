"""Every metric the report shows, defined once (the report renders this glossary; docs/design.md)."""

GLOSSARY: list[tuple[str, str]] = [
    ("ID / OOD", "In-distribution: GeneralPoints under the training rule face10 (J, Q, K = 10). "
     "Out-of-distribution: the face11 rule (J = 11, Q = 12, K = 13), never trained at target 24."),
    ("accuracy (acc)", "Share of held-out probe hands whose single greedy answer is a correct formula "
     "(exact arithmetic, every card value used once, equals the target)."),
    ("SE", "Standard error of an accuracy, sqrt(p (1 - p) / N) over the N probe hands."),
    ("loss proxy", "Mean teacher-forced negative log-likelihood (nats per token) of a held-out gold "
     "solution's completion tokens: the paper's cheap loss signal."),
    ("values accuracy", "Share of answers that list the card values correctly under the stated rule: "
     "separates 'misread the rule' from 'cannot compute'."),
    ("OOD peak", "The SFT probe step with the highest OOD accuracy pooled over neighbouring probes "
     "(the selection rule is stated in sft/selection.json)."),
    ("singular-value drift ds, ds/s", "s_tuned - s_ref per singular index, and that relative to s_ref."),
    ("per-index angle", "arccos |<u_ref_i, u_tuned_i>| (and the V side): how far the i-th singular "
     "direction turned."),
    ("principal angles (top-k)", "Angles between the top-k left (or right) singular subspaces, "
     "arccos of the singular values of U_ref[:, :k]^T U_tuned[:, :k]; k as a share of the rank or a count."),
    ("rotational share", "Share of ||dW||_F^2 off the diagonal of U_ref^T dW V_ref: update energy "
     "that rotates directions rather than rescaling them."),
    ("relative update", "||W_tuned - W_ref||_F / ||W_ref||_F."),
    ("directional restoration", "Keep the tuned singular values, take the singular vectors of the "
     "restored indices from the reference checkpoint (mode 'direction')."),
    ("recovered share", "(acc_point - acc_tuned) / (acc_ref - acc_tuned): the share of the accuracy "
     "lost from the reference to the tuned model that a restoration point wins back; undefined when "
     "nothing was lost."),
    ("RL recovery", "OOD accuracy after RL minus OOD accuracy of the SFT checkpoint RL started from."),
]

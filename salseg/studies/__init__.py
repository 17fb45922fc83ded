"""Studies of several runs: comparisons (``experiments/comparisons/``), ablations (``experiments/ablations/``) and
the robustness study (README "Running experiments", "Robustness"). :mod:`.plan` turns a study file into runs,
:mod:`.run` runs them and collects their metrics, :mod:`.report` writes the table, CSV, JSON and plots."""

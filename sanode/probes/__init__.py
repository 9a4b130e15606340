"""The paper's analyses (and two beyond it) as functions of trained models, returning tidy tables.

One module per analysis (its pipeline wrapper, of the same name, is in
:mod:`sanode.pipeline.analyses`);
each returns ``pandas.DataFrame`` rows that the pipeline writes to ``results/tables/`` and the
figures are drawn from:

* :mod:`.mse_time`      - MSE(t) on noisy copies of one letter, final-MSE histogram (Fig. 4)
* :mod:`.perturbation`  - single and collective eigen-direction perturbations (Figs. 5, 6)
* :mod:`.cases`         - one example per accuracy bucket (Fig. 7)
* :mod:`.timestep`      - convergence in the time step, Euler and RK4, fitted order (Fig. 8)
* :mod:`.inversion`     - pixel trajectories and backward integration (Figs. 9-12)
* :mod:`.baselines`     - logistic regression and an MLP on the same noisy test sets
* :mod:`.census`        - stability certificate and attractor census
"""

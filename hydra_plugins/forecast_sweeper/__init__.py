"""Hydra plugins of forecast: ``hydra/sweeper=optuna``, an Optuna study as a Hydra sweep
(``python train.py -m hparams_search=<model>``). Light to import: Hydra imports every plugin
module whenever an app starts; Optuna is imported only when a study runs."""

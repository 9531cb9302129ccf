"""Training helpers: metrics, the per-trial training functions and XGBoost backends."""

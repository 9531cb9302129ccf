"""Models: pure torch / scikit-learn / xgboost, free of Ray."""

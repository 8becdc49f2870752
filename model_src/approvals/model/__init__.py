"""The model: training, linear stacking, calibration, trees, the model package, prediction."""

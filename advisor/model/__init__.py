"""The learned predictions: the strategy and gain models, the probe's forecaster, and the meta-dataset's cells they are fitted on."""

"""The networks advisor trains (scratch architectures, the pretrained backbone, how each strategy freezes it) and the training loop."""

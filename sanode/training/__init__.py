"""Training and judging one model: the loop and its levers, the losses, checkpoints, the
bucket evaluation, time to accuracy, the speed benchmarks."""

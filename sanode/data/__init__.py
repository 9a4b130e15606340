"""The data: MNIST / Fashion-MNIST files (torchvision download or a mirror, IDX checks), the
synthetic letters, the train / validation / test splits, the prepared cache, augmentation."""

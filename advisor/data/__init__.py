"""The user's images: scan the folder, decode and sample images, the offline data sets, similarity to ImageNet."""

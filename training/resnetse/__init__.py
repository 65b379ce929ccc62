"""ResNetSE recipe: GE2E pre-training, BIM adversarial fine-tuning, distillation into L-ResNetSE."""

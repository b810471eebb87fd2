"""The command lines: train, test, predict and export, shared by train.py, test.py and swin-unet."""

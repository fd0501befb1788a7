"""Pure-torch networks: ICNet/PanoNet and ResNet-FPN/CIAE (see build.py for the entry points)."""

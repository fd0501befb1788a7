"""Pure-torch networks: ICNet/PanoNet and ResNet-FPN/CIAE (``panoptic_ros.kinds`` builds
them from their configs)."""

"""Pure-torch networks: ICNet (``icnet``) and PanoNet (``panonet``), ResNet-FPN
(``resnet_fpn``), the FCOS head (``fcos_head``) and CIAE (``ciae``), and pieces both share
(``common``); ``panoptic_ros.kinds`` builds them from their configs."""

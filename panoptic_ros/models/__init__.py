"""Pure-torch networks: ICNet (``icnet``) and PanoNet (``panonet``), ResNet-FPN
(``resnet_fpn``), the FCOS head (``fcos_head``) and CIAE (``ciae``), pieces both share
(``common``), and configs and construction by kind (``build``, the entry points)."""

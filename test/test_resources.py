"""Shipped weights and parameter files: the installed share directory first, else the checkout."""
import pytest

from panoptic_ros import resources


def test_without_an_install_the_checkout_is_used(monkeypatch):
    monkeypatch.delenv("AMENT_PREFIX_PATH", raising=False)
    assert resources.share_dir() is None
    assert resources.default_weights("panonet") == resources.REPOSITORY_ROOT / "weights" / "panonet_synthstreet"
    assert resources.default_params_file("ciae") == resources.REPOSITORY_ROOT / "config" / "ciae.yaml"


def test_an_installed_package_share_directory_wins(monkeypatch, tmp_path):
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages").mkdir(parents=True)
    (tmp_path / "share" / "ament_index" / "resource_index" / "packages" / "panoptic_ros").touch()
    (tmp_path / "share" / "panoptic_ros" / "weights").mkdir(parents=True)
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path))
    assert resources.share_dir() == tmp_path / "share" / "panoptic_ros"
    assert resources.default_weights("ciae") == tmp_path / "share" / "panoptic_ros" / "weights" / "ciae_synthstreet"
    # a folder the install lacks still comes from the checkout
    assert resources.default_params_file("ciae") == resources.REPOSITORY_ROOT / "config" / "ciae.yaml"


def test_unknown_models_are_refused():
    with pytest.raises(ValueError, match="unknown model 'yolo'"):
        resources.default_weights("yolo")

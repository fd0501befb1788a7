import os

from panoptic_ros.ros.environment import private_dds_environment

VARIABLES = ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_DOMAIN_ID", "ROS_HOME", "ROS_LOG_DIR")


def test_discovery_stays_on_this_host_in_a_domain_of_the_process(monkeypatch):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    private_dds_environment()
    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert os.environ["ROS_DOMAIN_ID"] == str(1 + os.getpid() % 100)
    assert "ROS_HOME" not in os.environ


def test_a_ros_home_is_made_on_request_and_the_environment_wins(monkeypatch, tmp_path):
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ROS_DOMAIN_ID", "42")
    private_dds_environment("env_test_home_")
    home = os.environ["ROS_HOME"]
    assert os.path.isdir(home) and os.path.basename(home).startswith("env_test_home_")
    assert os.environ["ROS_LOG_DIR"] == os.path.join(home, "log") and os.environ["ROS_DOMAIN_ID"] == "42"
    monkeypatch.setenv("ROS_HOME", str(tmp_path))
    monkeypatch.delenv("ROS_LOG_DIR")
    private_dds_environment("env_test_home_")
    assert os.environ["ROS_HOME"] == str(tmp_path) and os.environ["ROS_LOG_DIR"] == str(tmp_path / "log")

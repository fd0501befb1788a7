"""ament_python build of panoptic_ros (also a plain pip package)."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "panoptic_ros"

# training/ lives beside the package in the repository and installs as panoptic_ros.training.
training_packages = ["panoptic_ros.training"] + [
    f"panoptic_ros.training.{name}" for name in find_packages("training")
]

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]) + training_packages,
    package_dir={"panoptic_ros.training": "training"},
    package_data={"panoptic_ros.training": ["configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml")),
        (f"share/{PACKAGE}/weights", glob("weights/*.safetensors") + glob("weights/*.json")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="panoptic_ros maintainers",
    maintainer_email="panoptic_ros@example.com",
    description="Real-time panoptic segmentation (PanoNet, CIAE) for ROS 2",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "panoptic-eval = panoptic_ros.eval.cli:main",
            "panoptic-synth = panoptic_ros.synthstreet.cli:main",
            "panoptic_node = panoptic_ros.ros.node:main",
            "panoptic-train = panoptic_ros.training.train:main",
            "panoptic-evaluate = panoptic_ros.training.evaluate:main",
            "panoptic-export = panoptic_ros.training.export:main",
            "panoptic-release = panoptic_ros.training.release:main",
            "panoptic-snapshot = panoptic_ros.training.snapshot:main",
            "panoptic-bandwidth-search = panoptic_ros.training.bandwidth_search:main",
            "panoptic-replay = panoptic_ros.replay.cli:main",
        ],
    },
)

"""Packaging for Atoll: one copy-on-write resource behind objects, images, snapshots and volumes."""

from setuptools import find_packages, setup

setup(
    name="atoll",
    version="0.1.0",
    description="Unified copy-on-write storage for Ganeti and libvirt: objects, images, snapshots, volumes",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(
        include=["provider", "provider.*", "customization", "customization.*", "atoll_common", "atoll_common.*"]
    ),
    package_data={"provider": ["templates/*.j2"]},
    install_requires=[
        "click>=8.1",
        "pyyaml>=6.0",
        "jinja2>=3.1",
        "sqlalchemy>=2.0",
        "tqdm>=4.66",
        "requests>=2.31",
        "falcon>=4.0",
        "gunicorn>=22",
        "argon2-cffi>=23.1",
        "orjson>=3.9",
    ],
    extras_require={
        "postgresql": ["psycopg[binary]>=3.1"],
        "test": [
            "pytest>=8",
            "pytest-timeout>=2.3",
            "ruff>=0.6",
            "mypy>=1.11",
            "import-linter>=2.1",
            "types-PyYAML",
            "types-requests",
            "types-tqdm",
            "paramiko>=3.4",
            "ansible-core>=2.16,<2.20",
            "ansible-lint>=26.10,<27",
            "yamllint>=1.38",
            "pytest-testinfra>=10.2",
            "keystoneauth1>=5.6",
            "python-glanceclient>=4.5",
            "openstacksdk>=3.0",
            "python-swiftclient>=4.4",
            "pyopenssl>=24.2",  # Debian's python3-openssl does not match the venv's cryptography
            "python-cinderclient>=9.5",
            "python-openstackclient>=7.0",
        ],
    },
    entry_points={
        "console_scripts": ["atoll = provider.cli:main"],
        "atoll.backends": [
            "qcow2 = provider.backends.qcow2:Qcow2Backend",
            "reflink = provider.backends.reflink:ReflinkBackend",
            "rbd = provider.backends.rbd:RbdBackend",
        ],
    },
    classifiers=[
        "Programming Language :: Python :: 3.11",
        "Operating System :: POSIX :: Linux",
        "Topic :: System :: Filesystems",
    ],
)

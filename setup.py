"""Installs the ``processor`` package: ``pip install -e .``."""

from pathlib import Path

from setuptools import find_packages, setup

here = Path(__file__).parent


def requirements(name: str) -> list[str]:
    lines = (here / name).read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith(("#", "-r"))]


setup(
    name="tix-time-processor",
    version="1.0.0",
    description="TiX time processor: usage, quality and Hurst estimates from TiX probe reports, posted to tix-api",
    long_description=(here / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=find_packages(
        include=["processor", "processor.*", "processor_tools", "processor_tools.*", "reports_batch_formatter"]
    ),
    install_requires=requirements("requirements.txt"),
    extras_require={
        "notebook": requirements("requirements-notebook.txt") if (here / "requirements-notebook.txt").exists() else []
    },
    entry_points={"console_scripts": ["tix-processor = processor.cli:main"]},
)

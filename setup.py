"""Packaging for tiny_transformer. settings.ini is the single source of truth; this file only reads it.

Unlike nbdev's classic template, it does not import `pkg_resources` (gone from current setuptools).
"""
from configparser import ConfigParser

import setuptools

config = ConfigParser(delimiters=["="])
config.read("settings.ini", encoding="utf-8")
cfg = config["DEFAULT"]

licenses = {"apache2": ("Apache Software License 2.0", "OSI Approved :: Apache Software License")}
statuses = ["Planning", "Pre-Alpha", "Alpha", "Beta", "Production/Stable", "Mature", "Inactive"]
py_versions = ["3.10", "3.11", "3.12", "3.13"]


def reqs(key):
    return cfg.get(key, "").split()


extras = {name: reqs(f"{name}_requirements") for name in ("tracking", "widgets", "export", "serve")}
extras["all"] = sorted({r for rs in extras.values() for r in rs})
extras["dev"] = extras["all"] + reqs("dev_requirements")

lic = licenses[cfg["license"]]
min_python = cfg["min_python"]

setuptools.setup(
    name=cfg["lib_name"],
    version=cfg["version"],
    description=cfg["description"],
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    author=cfg["author"],
    author_email=cfg["author_email"],
    url=cfg["git_url"],
    license=lic[0],
    keywords=cfg["keywords"],
    classifiers=[
        "Development Status :: " + cfg["status"] + " - " + statuses[int(cfg["status"])],
        "Intended Audience :: " + cfg["audience"].title(),
        "License :: " + lic[1],
        "Natural Language :: " + cfg["language"].title(),
    ]
    + [f"Programming Language :: Python :: {v}" for v in py_versions[py_versions.index(min_python):]],
    packages=setuptools.find_packages(include=["tiny_transformer", "tiny_transformer.*"]),
    include_package_data=True,
    install_requires=reqs("requirements"),
    extras_require=extras,
    python_requires=">=" + min_python,
    zip_safe=False,
    entry_points={
        "console_scripts": cfg.get("console_scripts", "").split(),
        "nbdev": [f"{cfg['lib_path']}={cfg['lib_path']}._modidx:d"],
    },
)

"""The cookiecutter template of a lash plugin package, installed as ``lash_plugin_template``.

``lash new-plugin`` renders it; ``cookiecutter path/to/plugin_template`` does too. Only
``{{cookiecutter.project_slug}}/`` is rendered: this file and ``hooks/`` are not copied.
"""

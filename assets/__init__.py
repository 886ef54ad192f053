"""Artwork shipped with tkshm as package data (installed as ``tkshm.assets``).

The directory sits at the top of the repository, where people look for pictures; setup.cfg
maps it into the package so the window and ``tkshm install-desktop`` find the icon through
``importlib.resources`` whether tkshm runs from a checkout or from an installed wheel.
"""

"""Devices: the registry of real devices and a simulator of fake ones."""

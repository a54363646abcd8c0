"""Mesoscopic LIF populations with hidden neurons (neuLVM)."""
from .params import *  # noqa
from .model import *  # noqa

"""pytest at the repository root: notebooks run under nbval in quick mode, so they take seconds."""
import os

os.environ.setdefault("FMNIST_QUICK", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

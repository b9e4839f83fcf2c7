"""Settings split: base (shared), local (demo / development), test, production."""

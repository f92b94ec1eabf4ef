"""jaga-witness: an independent party's check and cosignature of every unit's hash chain."""

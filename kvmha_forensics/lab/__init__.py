"""The real-guest lab: assets, scenarios and the QEMU launcher that freezes guests on purpose."""

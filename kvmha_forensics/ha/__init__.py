"""The HA side: freeze assessment, passive status, the watcher, hooks, wire records."""

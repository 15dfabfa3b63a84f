"""Built-in analyzers, installed as ``kvmha_forensics.analyzers`` and registered through the
``kvmha_forensics.analyzers`` entry-point group like any third-party one."""

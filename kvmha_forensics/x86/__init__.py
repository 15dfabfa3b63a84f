"""x86 facts: CPU modes, KVM/VMX/SVM exit and suberror tables, instruction decoding."""

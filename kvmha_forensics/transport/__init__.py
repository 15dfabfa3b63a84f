"""How a guest is reached: one interface (:mod:`.base`), one module per transport."""

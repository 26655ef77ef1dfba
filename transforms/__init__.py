"""Engine-neutral ctxsync logic (contract v1).

Every operator here is a pure function over explicit, serializable state, so the PyFlink runner, the
Beam runner and the plain-Python reference all compute exactly the same thing. Nothing in this package
may import an engine.
"""

"""The unit's camera: a seam with a simulated and a picamera2 implementation, the ring of recent
frames, evidence sets on trigger, health (stall, cover), the bounded evidence store, chunking.

Pure parts (ring, evidence, health, chunks) take frames and `now` and return what happened; the
adapters (simulated, picamera2_adapter, store) do the I/O. Nothing here reads picamera2 at import
time: the picamera2 adapter imports it when it opens the camera.
"""

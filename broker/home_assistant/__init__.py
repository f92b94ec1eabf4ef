"""Home Assistant meets Jaga through MQTT discovery, published by the collector (units never
know of it): payload builders (discovery.py), state mapping (state.py), panel codes
(codes.py) and the bridge that carries them over the collector's own broker session
(bridge.py)."""

"""Pure sensor logic: (state, input, now) -> (state, observations). No I/O, no clock reads."""

"""One pure function per enforcement point: `decide_<point>(policy, state, input) -> Decision`."""

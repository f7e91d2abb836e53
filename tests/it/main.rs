//! Integration tests: real tmux, real git, the real binary.

//! runtime (work in progress).

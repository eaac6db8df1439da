//! The aws fleet adapter (in progress).

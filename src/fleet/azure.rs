//! The azure fleet adapter (in progress).

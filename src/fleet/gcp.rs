//! The gcp fleet adapter (in progress).

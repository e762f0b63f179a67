//! parlor-signaling

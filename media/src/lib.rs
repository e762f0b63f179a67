//! parlor-media

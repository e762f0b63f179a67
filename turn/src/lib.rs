//! parlor-turn

//! Parlor signaling: access tokens (LiveKit-compatible JWTs), the LiveKit signal protocol glue and
//! ICE-server configuration. Pure library: no networking, time is always passed in.

#[doc(hidden)]
pub mod fuzzing;
pub mod join_request;
pub mod protocol;
pub mod token;

pub use token::{AccessToken, Claims, TokenError, TokenPurpose, VideoGrant};

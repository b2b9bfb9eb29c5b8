//! Client for the session service.

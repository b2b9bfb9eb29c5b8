//! Wire protocol of the session service.

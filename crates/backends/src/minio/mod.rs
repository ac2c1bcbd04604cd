//! MinIO: the admin API (v3) and the payload encryption it requires.

pub mod madmin;

//! The end-to-end suites, one module each, in one test binary: the AWS SDK, kube and the
//! operator are linked once rather than once per suite, and the suites share one control plane
//! (`s3op_tests::fixture::cp`). Tests of every suite run side by side in this process, so a test
//! that needs a cluster-wide operator, or stops a server others use, brings its own.
//!
//! One suite: `cargo test -p s3op-tests --test e2e operator::`; one test: add its name.

mod binary;
mod chart;
mod compat;
mod compat_stores;
mod conformance;
mod control_plane;
mod gitops;
mod grant_table;
mod health;
mod hostile;
mod operator;
mod ownership;
mod reliability;
mod store_objects;
mod stores;

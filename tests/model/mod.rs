//! The reference model of etcd's v3 KV semantics lives in the library
//! (`revkv::fuzzing::model`) so that the fuzz targets check against the very
//! model the property tests use.
#![allow(unused_imports)]

pub use revkv::fuzzing::model::*;
